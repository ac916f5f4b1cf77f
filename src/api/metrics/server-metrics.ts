/**
 * Prometheus metrics (prom-client), vLLM's set under a zamba2_ prefix: requests by route and
 * status, running/waiting sequences (read from the scheduler at scrape time), time to first
 * token, time per output token, end-to-end latency, prompt/generation token counters, and
 * per-step engine telemetry.
 *
 * Implements SchedulerObserver (the scheduler calls onStep after every step) and ServingObserver
 * (serving/ calls onRequestDone once per request). Metrics live in their own Registry so tests
 * and several apps in one process never collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SchedulerObserver, SchedulerStats } from '../../scheduler/types.js';
import type { ServingObserver } from '../../serving/index.js';

const LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TPOT_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

export class ServerMetrics implements SchedulerObserver, ServingObserver {
  readonly registry: Registry;
  private statsSource: (() => SchedulerStats) | null = null;
  private readonly requests: Counter<'route' | 'status'>;
  private readonly finished: Counter<'finished_reason'>;
  private readonly ttft: Histogram;
  private readonly tpot: Histogram;
  private readonly e2e: Histogram;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly stepDuration: Histogram;
  private readonly stepTokens: Counter<'kind'>;
  private readonly preemptions: Counter;

  constructor(options: { registry?: Registry; defaultMetrics?: boolean } = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'zamba2_process_' });
    const registers = [registry];
    this.requests = new Counter({ name: 'zamba2_http_requests_total', help: 'HTTP requests by route and status code.', labelNames: ['route', 'status'], registers });
    this.finished = new Counter({ name: 'zamba2_request_success_total', help: 'Completions finished, by finish reason.', labelNames: ['finished_reason'], registers });
    this.ttft = new Histogram({ name: 'zamba2_time_to_first_token_seconds', help: 'Time from submit to the first output token.', buckets: LATENCY_BUCKETS_S, registers });
    this.tpot = new Histogram({ name: 'zamba2_time_per_output_token_seconds', help: 'Mean time between output tokens of a request.', buckets: TPOT_BUCKETS_S, registers });
    this.e2e = new Histogram({ name: 'zamba2_e2e_request_latency_seconds', help: 'Time from submit to the last event of a request.', buckets: LATENCY_BUCKETS_S, registers });
    this.promptTokens = new Counter({ name: 'zamba2_prompt_tokens_total', help: 'Prompt tokens processed.', registers });
    this.generationTokens = new Counter({ name: 'zamba2_generation_tokens_total', help: 'Output tokens generated.', registers });
    this.stepDuration = new Histogram({ name: 'zamba2_step_duration_seconds', help: 'Wall time of one engine step.', buckets: LATENCY_BUCKETS_S, registers });
    this.stepTokens = new Counter({ name: 'zamba2_step_tokens_total', help: 'Tokens computed by engine steps, prefill or decode.', labelNames: ['kind'], registers });
    this.preemptions = new Counter({ name: 'zamba2_num_preemptions_total', help: 'Sequences preempted to free memory.', registers });
    const stats = (): SchedulerStats | null => this.statsSource?.() ?? null;
    new Gauge({
      name: 'zamba2_num_requests_running',
      help: 'Sequences in the running batch.',
      registers,
      collect() {
        this.set(stats()?.running ?? 0);
      },
    });
    new Gauge({
      name: 'zamba2_num_requests_waiting',
      help: 'Requests waiting for admission.',
      registers,
      collect() {
        this.set(stats()?.waiting ?? 0);
      },
    });
    new Gauge({
      name: 'zamba2_state_slots_usage_ratio',
      help: 'Fraction of Mamba2 state slots in use.',
      registers,
      collect() {
        const s = stats();
        this.set(s && s.slotsTotal > 0 ? s.slotsUsed / s.slotsTotal : 0);
      },
    });
    new Gauge({
      name: 'zamba2_kv_pages_usage_ratio',
      help: 'Fraction of attention KV pages in use.',
      registers,
      collect() {
        const s = stats();
        this.set(s && s.pagesTotal > 0 ? s.pagesUsed / s.pagesTotal : 0);
      },
    });
  }

  /** Where running/waiting come from (the scheduler), read at scrape time. */
  bindScheduler(stats: () => SchedulerStats): void {
    this.statsSource = stats;
  }

  countRequest(route: string, status: number): void {
    this.requests.inc({ route, status: String(status) });
  }

  onRequestDone(info: Parameters<ServingObserver['onRequestDone']>[0]): void {
    this.promptTokens.inc(info.promptTokens);
    this.generationTokens.inc(info.completionTokens);
    if (info.timeToFirstTokenMs !== null) this.ttft.observe(info.timeToFirstTokenMs / 1000);
    if (info.timePerOutputTokenMs !== null) this.tpot.observe(info.timePerOutputTokenMs / 1000);
    this.e2e.observe(info.e2eMs / 1000);
    for (const reason of info.finishReasons) this.finished.inc({ finished_reason: reason });
    if (info.outcome !== 'finished') this.finished.inc({ finished_reason: info.outcome === 'aborted' ? 'abort' : 'error' }, 1);
  }

  onStep(info: { durationMs: number; sequences: number; tokens: number; prefillTokens: number; decodeTokens: number }): void {
    this.stepDuration.observe(info.durationMs / 1000);
    if (info.prefillTokens > 0) this.stepTokens.inc({ kind: 'prefill' }, info.prefillTokens);
    if (info.decodeTokens > 0) this.stepTokens.inc({ kind: 'decode' }, info.decodeTokens);
  }

  onPreempt(count: number): void {
    this.preemptions.inc(count);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

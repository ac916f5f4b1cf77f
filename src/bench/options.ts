/**
 * Command-line flags of `npm run bench` → BenchOptions. A workload's defaults (workloads.ts) come
 * first; every flag given overrides one of them.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { isWorkloadName, WORKLOAD_DESCRIPTIONS, WORKLOAD_NAMES, workloadDefaults, type WorkloadName, type WorkloadParams } from './workloads.js';

export interface BaselineOptions {
  /** Name in the table and JSON ("vllm", "transformers"). */
  name: string;
  url: string;
  /** Shell command that starts it; null = it is already running at `url`. */
  command: string | null;
  /** Model id to send; null = the first id its /v1/models lists. */
  model: string | null;
  apiKey: string | null;
}

export interface BenchOptions {
  workload: WorkloadName;
  params: WorkloadParams;
  /** A running server; null = the bench starts ours. */
  url: string | null;
  /** --model and --device for the server the bench starts. */
  model: string | null;
  device: string | null;
  /** More flags for the server the bench starts (workload defaults first, then these). */
  serverArgs: string[];
  /** Model id to send; null = the first id /v1/models lists. */
  servedModelName: string | null;
  apiKey: string | null;
  seed: number;
  outPath: string;
  /** rate-sweep only; null for other workloads. */
  svgPath: string | null;
  baseline: BaselineOptions | null;
  readyTimeoutMs: number;
  /** A streamed request that receives nothing for this long fails ("timeout" in the errors row). */
  requestIdleTimeoutMs: number;
  /** Copy the started servers' output to stderr. */
  verbose: boolean;
}

export const USAGE = `Usage: npm run bench -- --workload NAME [options]

Target (one of):
  --url URL                  a running server (no server is started)
  --model DIR --device D     start ours (node dist/main.js) with this checkpoint and device (cpu|cuda|fake)
  --server-args "ARGS"       more flags for the server the bench starts, e.g. "--max-num-seqs 128"
  --fake-step-latency-ms MS  shorthand for the fake engine's step time (0 = measure server overhead)

Workload (defaults depend on --workload):
  --workload NAME            ${WORKLOAD_NAMES.join(' | ')}
  --num-requests N           streamed requests per phase
  --concurrency N            streams in flight (closed loop) or the cap under a rate
  --prompt-tokens N          prompt length in tokens (before the chat template)
  --max-tokens N             output tokens per request
  --rates LIST               request rates for rate-sweep, req/s, e.g. "1,2,4,inf"
  --burstiness X             gamma shape of arrival gaps (1 = Poisson)
  --warmup N                 unmeasured requests before the first phase
  --endpoint chat|completions
  --temperature X            default 0
  --no-ignore-eos            do not send ignore_eos (answers may end early; real token counts are used)
  --connections N            autocannon connections (http phases)
  --duration-s S             autocannon duration (http phases)
  --http-requests N          autocannon: stop after N requests instead of a duration
  --seed N                   prompts and arrival times (default 0)

Baseline (same workload, same prompts, run after ours; adds baseline and speedup columns):
  --baseline-url URL         an OpenAI-compatible server
  --baseline-cmd "CMD"       start it first with this shell command (needs --baseline-url)
  --baseline-model ID        model id to send it (default: first of its /v1/models)
  --baseline-name NAME       column label (default "baseline")
  --baseline-api-key KEY

Output:
  --out FILE.json            default bench-results/WORKLOAD-TIMESTAMP.json
  --svg FILE.svg             rate-sweep plot (default: next to --out)
  --served-model-name ID     model id to send (default: first of /v1/models)
  --api-key KEY              bearer key (default: env ZAMBA2_BENCH_API_KEY)
  --ready-timeout-s S        wait this long for a started server (default 300)
  --request-timeout-s S      fail a stream that receives nothing for this long (default 300)
  --verbose                  show the started servers' logs

Workloads:
${WORKLOAD_NAMES.map((name) => `  ${name.padEnd(14)} ${WORKLOAD_DESCRIPTIONS[name]}`).join('\n')}
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

function positiveInt(flag: string, text: string | undefined, min = 1): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got "${text}"`);
  return value;
}

function positiveNumber(flag: string, text: string | undefined, allowZero = false): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new UsageError(`--${flag} must be a ${allowZero ? 'non-negative' : 'positive'} number, got "${text}"`);
  return value;
}

export function parseRates(text: string): number[] {
  const rates = text.split(',').map((part) => part.trim()).filter((part) => part.length > 0).map((part) => {
    const rate = part === 'inf' ? Infinity : Number(part);
    if (!(rate > 0) || Number.isNaN(rate)) throw new UsageError(`--rates: "${part}" is not a positive rate (req/s) or "inf"`);
    return rate;
  });
  if (rates.length === 0) throw new UsageError('--rates needs at least one rate');
  return rates;
}

/** Split a flag string on whitespace; quotes are not interpreted (pass flags, not shell code). */
export function splitArgs(text: string | undefined): string[] {
  return text === undefined ? [] : text.split(/\s+/).filter((part) => part.length > 0);
}

function timestamp(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

/** Returns null when --help was asked for. Throws UsageError on bad input. */
export function parseBenchArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, now = new Date()): BenchOptions | null {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      workload: { type: 'string' },
      url: { type: 'string' },
      model: { type: 'string' },
      device: { type: 'string' },
      'server-args': { type: 'string' },
      'fake-step-latency-ms': { type: 'string' },
      'num-requests': { type: 'string' },
      concurrency: { type: 'string' },
      'prompt-tokens': { type: 'string' },
      'max-tokens': { type: 'string' },
      rates: { type: 'string' },
      burstiness: { type: 'string' },
      warmup: { type: 'string' },
      endpoint: { type: 'string' },
      temperature: { type: 'string' },
      'no-ignore-eos': { type: 'boolean' },
      connections: { type: 'string' },
      'duration-s': { type: 'string' },
      'http-requests': { type: 'string' },
      seed: { type: 'string' },
      'baseline-url': { type: 'string' },
      'baseline-cmd': { type: 'string' },
      'baseline-model': { type: 'string' },
      'baseline-name': { type: 'string' },
      'baseline-api-key': { type: 'string' },
      out: { type: 'string' },
      svg: { type: 'string' },
      'served-model-name': { type: 'string' },
      'api-key': { type: 'string' },
      'ready-timeout-s': { type: 'string' },
      'request-timeout-s': { type: 'string' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  const workload = values.workload;
  if (workload === undefined) throw new UsageError('--workload is required');
  if (!isWorkloadName(workload)) throw new UsageError(`unknown workload "${workload}"; one of: ${WORKLOAD_NAMES.join(', ')}`);
  if (values.url !== undefined && (values.model !== undefined || values.device !== undefined || values['server-args'] !== undefined)) {
    throw new UsageError('--url targets a running server; --model/--device/--server-args are for a server the bench starts');
  }

  const params = workloadDefaults(workload);
  params.numRequests = positiveInt('num-requests', values['num-requests'], 0) ?? params.numRequests;
  params.concurrency = positiveInt('concurrency', values.concurrency) ?? params.concurrency;
  params.promptTokens = positiveInt('prompt-tokens', values['prompt-tokens']) ?? params.promptTokens;
  params.maxTokens = positiveInt('max-tokens', values['max-tokens']) ?? params.maxTokens;
  params.burstiness = positiveNumber('burstiness', values.burstiness) ?? params.burstiness;
  params.warmupRequests = positiveInt('warmup', values.warmup, 0) ?? params.warmupRequests;
  params.temperature = positiveNumber('temperature', values.temperature, true) ?? params.temperature;
  if (values['no-ignore-eos']) params.ignoreEos = false;
  if (values.rates !== undefined) {
    if (params.rates === null) throw new UsageError('--rates applies to rate-sweep only');
    params.rates = parseRates(values.rates);
  }
  if (values.endpoint !== undefined) {
    if (values.endpoint !== 'chat' && values.endpoint !== 'completions') throw new UsageError(`--endpoint must be chat or completions, got "${values.endpoint}"`);
    params.endpoint = values.endpoint;
  }
  if (params.http !== null) {
    params.http.connections = positiveInt('connections', values.connections) ?? params.http.connections;
    const durationS = positiveNumber('duration-s', values['duration-s']);
    const amount = positiveInt('http-requests', values['http-requests']);
    if (amount !== undefined) params.http = { ...params.http, amount, durationS: null };
    else if (durationS !== undefined) params.http = { ...params.http, durationS, amount: null };
    if (values['max-tokens'] !== undefined) params.http.maxTokens = params.maxTokens;
  } else if (values.connections !== undefined || values['duration-s'] !== undefined || values['http-requests'] !== undefined) {
    throw new UsageError(`--connections/--duration-s/--http-requests apply to workloads with an HTTP phase (http-overhead, smoke)`);
  }

  const serverArgs = splitArgs(values['server-args']);
  const fakeLatency = positiveNumber('fake-step-latency-ms', values['fake-step-latency-ms'], true);
  if (fakeLatency !== undefined) serverArgs.push('--fake-step-latency-ms', String(fakeLatency));

  let baseline: BaselineOptions | null = null;
  if (values['baseline-cmd'] !== undefined && values['baseline-url'] === undefined) {
    throw new UsageError('--baseline-cmd needs --baseline-url (where the started baseline listens)');
  }
  if (values['baseline-url'] !== undefined) {
    baseline = {
      name: values['baseline-name'] ?? 'baseline',
      url: values['baseline-url'],
      command: values['baseline-cmd'] ?? null,
      model: values['baseline-model'] ?? null,
      apiKey: values['baseline-api-key'] ?? null,
    };
  }

  const outPath = values.out ?? join('bench-results', `${workload}-${timestamp(now)}.json`);
  const svgPath = params.rates === null ? null : (values.svg ?? outPath.replace(/\.json$/i, '') + '.svg');
  return {
    workload,
    params,
    url: values.url ?? null,
    model: values.model ?? null,
    device: values.device ?? null,
    serverArgs,
    servedModelName: values['served-model-name'] ?? null,
    apiKey: values['api-key'] ?? env.ZAMBA2_BENCH_API_KEY ?? null,
    seed: positiveInt('seed', values.seed, 0) ?? 0,
    outPath,
    svgPath,
    baseline,
    readyTimeoutMs: (positiveNumber('ready-timeout-s', values['ready-timeout-s']) ?? 300) * 1000,
    requestIdleTimeoutMs: (positiveNumber('request-timeout-s', values['request-timeout-s']) ?? 300) * 1000,
    verbose: values.verbose ?? false,
  };
}

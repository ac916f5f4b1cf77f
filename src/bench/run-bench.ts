/**
 * One bench run: start (or reach) the servers, warm them up, run each phase of the workload
 * against ours and then the baseline with the same prompts and arrival times, stop what was
 * started, and assemble the result (JSON object, table, optional SVG). Called by cli.ts; the
 * e2e test goes through the CLI.
 */
import os from 'node:os';
import { makePrompts } from './prompts.js';
import { arrivalOffsetsMs, createRandom } from './random.js';
import { driveRequests } from './drive.js';
import { closeTarget, createTarget, getOnce, sendStreamingRequest, type Target } from './sse-client.js';
import { runHttpLoad } from './http-load.js';
import { startBaselineCommand, startOurServer, type ServerProcess } from './server-process.js';
import { summarizeStreams, type HttpSummary, type StreamSummary } from './stats.js';
import { renderTable, tableCells, type TableColumn } from './report-table.js';
import { formatRate, requestBody, WORKLOAD_DESCRIPTIONS, workloadPhases, type Phase } from './workloads.js';
import type { BenchOptions } from './options.js';
import { renderRateSweepPlot } from './rate-sweep-plot.js';

export const RESULT_SCHEMA_VERSION = 1;

export interface PhaseResult {
  name: string;
  kind: Phase['kind'];
  /** rate-sweep phases: the offered request rate ("inf" = all at once). */
  ratePerS: string | null;
  ours: StreamSummary | HttpSummary;
  baseline: StreamSummary | HttpSummary | null;
}

export interface ServerInfo {
  name: string;
  baseUrl: string;
  model: string;
  /** true when this run started the server (and stopped it). */
  startedByBench: boolean;
  /** How it was started: flags for ours, the shell command for a baseline. */
  launch: string | null;
}

export interface BenchResult {
  schemaVersion: number;
  workload: string;
  description: string;
  startedAt: string;
  finishedAt: string;
  /** The bench's own flags, as given. */
  argv: string[];
  seed: number;
  params: Record<string, unknown>;
  environment: {
    node: string;
    platform: string;
    arch: string;
    cpuModel: string;
    cpuCount: number;
    totalMemoryBytes: number;
    /** 1-minute load average at the start and the end: other work on the machine skews the numbers. */
    loadAverage1mStart: number;
    loadAverage1mEnd: number;
  };
  server: ServerInfo;
  baseline: ServerInfo | null;
  phases: PhaseResult[];
  /** The printed table (Markdown). */
  table: string;
  plotSvgPath: string | null;
}

export interface BenchOutput {
  result: BenchResult;
  /** SVG text for rate-sweep, else null; cli.ts writes it to result.plotSvgPath. */
  plotSvg: string | null;
}

type Log = (line: string) => void;

async function resolveModelId(baseUrl: string, apiKey: string | null, explicit: string | null): Promise<string> {
  if (explicit !== null) return explicit;
  const res = await getOnce(`${baseUrl}/v1/models`, apiKey === null ? {} : { authorization: `Bearer ${apiKey}` });
  if (res.status !== 200) throw new Error(`GET ${baseUrl}/v1/models answered ${res.status}; pass --served-model-name / --baseline-model`);
  const body = JSON.parse(res.body) as { data?: Array<{ id?: unknown }> };
  const id = body.data?.[0]?.id;
  if (typeof id !== 'string') throw new Error(`GET ${baseUrl}/v1/models listed no model; pass --served-model-name / --baseline-model`);
  return id;
}

function paramsForJson(options: BenchOptions): Record<string, unknown> {
  const { rates, ...rest } = options.params;
  return { ...rest, rates: rates === null ? null : rates.map(formatRate) };
}

export async function runBench(options: BenchOptions, argv: readonly string[], log: Log): Promise<BenchOutput> {
  const startedAt = new Date();
  const loadAverage1mStart = os.loadavg()[0] ?? Number.NaN;
  const { params } = options;
  const started: ServerProcess[] = [];
  const targets: Target[] = [];
  try {
    // Servers first, so a failure to start costs no measuring time.
    let ourUrl = options.url;
    const ourLaunchArgs = [...params.serverArgs, ...options.serverArgs];
    if (ourUrl === null) {
      log(`starting the server (${[options.model && `--model ${options.model}`, options.device && `--device ${options.device}`, ...ourLaunchArgs].filter(Boolean).join(' ')})`);
      const server = await startOurServer({ model: options.model, device: options.device, extraArgs: ourLaunchArgs, readyTimeoutMs: options.readyTimeoutMs, echoLogs: options.verbose });
      started.push(server);
      ourUrl = server.baseUrl;
    }
    const ours = createTarget(ourUrl, await resolveModelId(ourUrl, options.apiKey, options.servedModelName), options.apiKey, options.requestIdleTimeoutMs);
    targets.push(ours);
    let baseline: Target | null = null;
    if (options.baseline !== null) {
      const b = options.baseline;
      if (b.command !== null) {
        log(`starting the baseline: ${b.command}`);
        started.push(await startBaselineCommand({ command: b.command, baseUrl: b.url, readyTimeoutMs: options.readyTimeoutMs, echoLogs: options.verbose }));
      }
      baseline = createTarget(b.url, await resolveModelId(b.url.replace(/\/+$/, ''), b.apiKey, b.model), b.apiKey, options.requestIdleTimeoutMs);
      targets.push(baseline);
    }

    const phases = workloadPhases(options.workload, params);
    const httpBodyCount = params.http === null ? 0 : 64;
    const prompts = makePrompts(Math.max(params.numRequests, httpBodyCount) + params.warmupRequests, params.promptTokens, options.seed);
    const warmupPrompts = prompts.slice(prompts.length - params.warmupRequests);
    const streamBodies = prompts.slice(0, params.numRequests).map((p) => requestBody(params, p.text, params.maxTokens));
    const httpBodies = params.http === null ? [] : prompts.slice(0, httpBodyCount).map((p) => requestBody(params, p.text, params.http?.maxTokens ?? params.maxTokens));

    for (const target of targets) {
      if (warmupPrompts.length === 0) continue;
      const warm = await driveRequests({
        items: warmupPrompts.map((p) => requestBody(params, p.text, Math.min(params.maxTokens, 16))),
        concurrency: Math.min(params.concurrency, warmupPrompts.length),
        send: (body) => sendStreamingRequest(target, params.endpoint, body),
      });
      const failed = warm.results.filter((r) => !r.ok);
      if (failed.length === warm.results.length) {
        throw new Error(`every warm-up request to ${target.baseUrl} failed: ${failed[0]?.errorKind} ${failed[0]?.errorMessage ?? ''}`);
      }
    }

    const phaseResults: PhaseResult[] = [];
    for (const [index, phase] of phases.entries()) {
      const runPhase = async (target: Target): Promise<StreamSummary | HttpSummary> => {
        if (phase.kind === 'http') {
          const http = params.http;
          if (http === null) throw new Error('http phase without http parameters');
          return runHttpLoad(target, {
            endpoint: params.endpoint,
            bodies: httpBodies,
            connections: http.connections,
            ...(http.amount !== null ? { amount: http.amount } : { durationS: http.durationS ?? 10 }),
          });
        }
        // Same arrival times for ours and the baseline: the random stream depends on seed and phase only.
        const offsets = phase.ratePerS === null ? undefined : arrivalOffsetsMs(streamBodies.length, phase.ratePerS, params.burstiness, createRandom(options.seed * 1000 + index));
        const run = await driveRequests({
          items: streamBodies,
          concurrency: params.concurrency,
          ...(offsets === undefined ? {} : { sendOffsetsMs: offsets }),
          send: (body) => sendStreamingRequest(target, params.endpoint, body),
        });
        return summarizeStreams(run.results, run.durationMs);
      };
      log(`phase ${phase.name}: ${ours.baseUrl}`);
      const oursSummary = await runPhase(ours);
      let baselineSummary: StreamSummary | HttpSummary | null = null;
      if (baseline !== null) {
        log(`phase ${phase.name}: ${baseline.baseUrl} (${options.baseline?.name})`);
        baselineSummary = await runPhase(baseline);
      }
      phaseResults.push({
        name: phase.name,
        kind: phase.kind,
        ratePerS: phase.kind === 'stream' && phase.ratePerS !== null ? formatRate(phase.ratePerS) : null,
        ours: oursSummary,
        baseline: baselineSummary,
      });
    }

    const columns: TableColumn[] = phaseResults.map((p) => ({ name: p.name, ours: p.ours, baseline: p.baseline }));
    const table = renderTable(tableCells(columns, options.baseline?.name ?? 'baseline'));
    const baselineName = options.baseline?.name ?? 'baseline';
    const launch = options.url === null ? [options.model && `--model ${options.model}`, options.device && `--device ${options.device}`, ...ourLaunchArgs].filter(Boolean).join(' ') : null;
    const subtitle = `${ours.model} (${launch ?? ours.baseUrl}), ${params.numRequests} requests per rate, ${params.promptTokens}-token prompts, ${params.maxTokens} output tokens, burstiness ${params.burstiness}, seed ${options.seed}`;
    const plotSvg = params.rates === null ? null : renderRateSweepPlot(options.workload, phaseResults, baselineName, subtitle);
    const result: BenchResult = {
      schemaVersion: RESULT_SCHEMA_VERSION,
      workload: options.workload,
      description: WORKLOAD_DESCRIPTIONS[options.workload],
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      argv: [...argv],
      seed: options.seed,
      params: paramsForJson(options),
      environment: {
        node: process.version,
        platform: process.platform,
        arch: process.arch,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        cpuCount: os.cpus().length,
        totalMemoryBytes: os.totalmem(),
        loadAverage1mStart,
        loadAverage1mEnd: os.loadavg()[0] ?? Number.NaN,
      },
      server: {
        name: 'zamba2-serve',
        baseUrl: ours.baseUrl,
        model: ours.model,
        startedByBench: options.url === null,
        launch,
      },
      baseline:
        baseline === null || options.baseline === null
          ? null
          : { name: baselineName, baseUrl: baseline.baseUrl, model: baseline.model, startedByBench: options.baseline.command !== null, launch: options.baseline.command },
      phases: phaseResults,
      table,
      plotSvgPath: options.svgPath,
    };
    return { result, plotSvg };
  } finally {
    for (const target of targets) closeTarget(target);
    for (const server of started.reverse()) await server.stop();
  }
}

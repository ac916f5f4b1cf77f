/**
 * From per-request records to the numbers a user reads: throughput, latency percentiles, errors.
 * Definitions follow vLLM's benchmark_serving so numbers can be compared across servers:
 * - TTFT: request sent → first chunk with text.
 * - TPOT (time per output token): (e2e − TTFT) / (output tokens − 1), per request, for requests
 *   with at least two output tokens.
 * - ITL (inter-token latency): every gap between consecutive text chunks, all requests pooled.
 * - E2E: request sent → end of stream.
 */
import type { StreamRecord } from './sse-client.js';

export interface Distribution {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Linear interpolation between closest ranks (numpy's default), on a sorted copy. */
export function percentile(sortedValues: readonly number[], fraction: number): number {
  if (sortedValues.length === 0) return Number.NaN;
  const rank = Math.min(1, Math.max(0, fraction)) * (sortedValues.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const lowValue = sortedValues[low] ?? Number.NaN;
  const highValue = sortedValues[high] ?? Number.NaN;
  return lowValue + (highValue - lowValue) * (rank - low);
}

export function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((acc, v) => acc + v, 0);
  return {
    count: sorted.length,
    mean: sorted.length > 0 ? sum / sorted.length : Number.NaN,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted.length > 0 ? (sorted[sorted.length - 1] ?? Number.NaN) : Number.NaN,
  };
}

/** One phase of streamed requests, summarised. Field names are the JSON file's. */
export interface StreamSummary {
  kind: 'stream';
  requestsTotal: number;
  requestsOk: number;
  requestsFailed: number;
  /** First send → last completion, ms. */
  durationMs: number;
  requestsPerS: number;
  outputTokensPerS: number;
  /** (prompt + output tokens) / duration; prompt tokens as the server counted them. */
  totalTokensPerS: number;
  promptTokensMean: number;
  outputTokensMean: number;
  outputTokensTotal: number;
  ttftMs: Distribution;
  tpotMs: Distribution;
  itlMs: Distribution;
  e2eMs: Distribution;
  /**
   * Wall time of the phase divided by all output tokens, µs. With a zero-latency fake engine this
   * is what the server's JavaScript (HTTP, serving, scheduler, SSE) costs per token at this load.
   */
  wallUsPerOutputToken: number;
  /** Failed requests by class: HTTP status ("429", "503"), "stream-error", "network", "protocol". */
  errorsByKind: Record<string, number>;
  /** finish_reason counts of successful requests ("length", "stop"). */
  finishReasons: Record<string, number>;
  /** First error message of each kind, to make failures readable. */
  errorSamples: Record<string, string>;
}

export function summarizeStreams(records: readonly StreamRecord[], durationMs: number): StreamSummary {
  const ok = records.filter((r) => r.ok);
  const errorsByKind: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  for (const r of records) {
    if (r.ok) continue;
    const kind = r.errorKind ?? 'unknown';
    errorsByKind[kind] = (errorsByKind[kind] ?? 0) + 1;
    if (errorSamples[kind] === undefined && r.errorMessage !== null) errorSamples[kind] = r.errorMessage;
  }
  const finishReasons: Record<string, number> = {};
  for (const r of ok) {
    const reason = r.finishReason ?? 'none';
    finishReasons[reason] = (finishReasons[reason] ?? 0) + 1;
  }
  const ttft: number[] = [];
  const tpot: number[] = [];
  const itl: number[] = [];
  let outputTokensTotal = 0;
  let promptTokensTotal = 0;
  let promptTokensCounted = 0;
  for (const r of ok) {
    outputTokensTotal += r.outputTokens;
    if (r.promptTokens !== null) {
      promptTokensTotal += r.promptTokens;
      promptTokensCounted += 1;
    }
    if (r.ttftMs !== null) {
      ttft.push(r.ttftMs);
      if (r.outputTokens > 1) tpot.push((r.e2eMs - r.ttftMs) / (r.outputTokens - 1));
    }
    for (let i = 1; i < r.chunkTimesMs.length; i++) itl.push((r.chunkTimesMs[i] ?? 0) - (r.chunkTimesMs[i - 1] ?? 0));
  }
  const durationS = durationMs / 1000;
  const promptTokensMean = promptTokensCounted > 0 ? promptTokensTotal / promptTokensCounted : Number.NaN;
  const promptTokensForThroughput = promptTokensCounted > 0 ? promptTokensMean * ok.length : 0;
  return {
    kind: 'stream',
    requestsTotal: records.length,
    requestsOk: ok.length,
    requestsFailed: records.length - ok.length,
    durationMs,
    requestsPerS: durationS > 0 ? ok.length / durationS : Number.NaN,
    outputTokensPerS: durationS > 0 ? outputTokensTotal / durationS : Number.NaN,
    totalTokensPerS: durationS > 0 ? (outputTokensTotal + promptTokensForThroughput) / durationS : Number.NaN,
    promptTokensMean,
    outputTokensMean: ok.length > 0 ? outputTokensTotal / ok.length : Number.NaN,
    outputTokensTotal,
    ttftMs: distribution(ttft),
    tpotMs: distribution(tpot),
    itlMs: distribution(itl),
    e2eMs: distribution(ok.map((r) => r.e2eMs)),
    wallUsPerOutputToken: outputTokensTotal > 0 ? (durationMs * 1000) / outputTokensTotal : Number.NaN,
    errorsByKind,
    finishReasons,
    errorSamples,
  };
}

/** One autocannon phase (non-streamed HTTP requests), summarised. */
export interface HttpSummary {
  kind: 'http';
  requestsTotal: number;
  requestsOk: number;
  requestsFailed: number;
  durationMs: number;
  requestsPerS: number;
  /** Response latency over all responses (autocannon's histogram), ms. */
  latencyMs: { mean: number; p50: number; p90: number; p99: number; max: number };
  connections: number;
  errorsByKind: Record<string, number>;
}

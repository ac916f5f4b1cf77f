/**
 * The named workloads: each is a set of default parameters and the phases they expand into.
 * Every default can be overridden from the command line (options.ts), so a workload is a starting
 * point, not a fixed script; the JSON result records the parameters actually used.
 */
import type { Endpoint } from './sse-client.js';

export const WORKLOAD_NAMES = ['smoke', 'chat-short', 'long-prompt', 'many-streams', 'rate-sweep', 'http-overhead'] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

export function isWorkloadName(name: string): name is WorkloadName {
  return (WORKLOAD_NAMES as readonly string[]).includes(name);
}

export interface WorkloadParams {
  endpoint: Endpoint;
  /** Streamed requests per phase (0 = no streamed phase). */
  numRequests: number;
  /** Most streamed requests in flight (closed loop), or the cap under a rate (open loop). */
  concurrency: number;
  /** Prompt length in tokens, before the chat template. */
  promptTokens: number;
  maxTokens: number;
  /** Open loop: one phase per request rate (req/s; Infinity = all at once). null = closed loop. */
  rates: number[] | null;
  /** Gamma shape of the arrival gaps: 1 = Poisson, < 1 burstier, > 1 steadier. */
  burstiness: number;
  /** Requests sent (and not measured) before the first phase, to warm JIT and engine caches. */
  warmupRequests: number;
  /** autocannon phase (non-streamed requests), or null. */
  http: { connections: number; durationS: number | null; amount: number | null; maxTokens: number } | null;
  /** Flags the bench adds when it starts our server for this workload (before the user's own). */
  serverArgs: string[];
  temperature: number;
  /** Send `ignore_eos: true` so every request produces exactly maxTokens tokens (vLLM extension). */
  ignoreEos: boolean;
}

export const WORKLOAD_DESCRIPTIONS: Record<WorkloadName, string> = {
  smoke: 'tiny: 8 streamed chats (4 at a time) and 16 autocannon requests; for CI',
  'chat-short': 'chat, ~32-token prompts, 128-token answers, 16 streams at a time',
  'long-prompt': '~2,000-token prompts, 16-token answers, 4 streams at a time',
  'many-streams': '256 streams at once, ~32-token prompts, 64-token answers',
  'rate-sweep': 'Poisson arrivals (gamma with --burstiness) at each of --rates req/s; writes an SVG plot',
  'http-overhead': 'autocannon, non-streamed 4-token chats, bodies rotated per request, 32 connections, 10 s',
};

const COMMON = { endpoint: 'chat', temperature: 0, ignoreEos: true, burstiness: 1, serverArgs: [] as string[] } as const;

export function workloadDefaults(name: WorkloadName): WorkloadParams {
  switch (name) {
    case 'smoke':
      return { ...COMMON, serverArgs: [], numRequests: 8, concurrency: 4, promptTokens: 16, maxTokens: 8, rates: null, warmupRequests: 0, http: { connections: 4, durationS: null, amount: 16, maxTokens: 4 } };
    case 'chat-short':
      return { ...COMMON, serverArgs: [], numRequests: 128, concurrency: 16, promptTokens: 32, maxTokens: 128, rates: null, warmupRequests: 2, http: null };
    case 'long-prompt':
      return { ...COMMON, serverArgs: [], numRequests: 32, concurrency: 4, promptTokens: 2000, maxTokens: 16, rates: null, warmupRequests: 1, http: null };
    case 'many-streams':
      // The server's default batch (64 sequences) would queue three quarters of the streams.
      return { ...COMMON, serverArgs: ['--max-num-seqs', '256'], numRequests: 256, concurrency: 256, promptTokens: 32, maxTokens: 64, rates: null, warmupRequests: 2, http: null };
    case 'rate-sweep':
      return { ...COMMON, serverArgs: [], numRequests: 48, concurrency: 256, promptTokens: 64, maxTokens: 64, rates: [2, 4, 8, 16, 32], warmupRequests: 2, http: null };
    case 'http-overhead':
      return { ...COMMON, serverArgs: [], numRequests: 0, concurrency: 1, promptTokens: 32, maxTokens: 4, rates: null, warmupRequests: 2, http: { connections: 32, durationS: 10, amount: null, maxTokens: 4 } };
  }
}

/** One measured step of a workload; each is run against our server, then against the baseline. */
export type Phase =
  | { kind: 'stream'; name: string; ratePerS: number | null }
  | { kind: 'http'; name: string };

export function workloadPhases(name: WorkloadName, params: WorkloadParams): Phase[] {
  const phases: Phase[] = [];
  if (params.numRequests > 0) {
    if (params.rates === null) phases.push({ kind: 'stream', name: name === 'smoke' ? 'stream' : name, ratePerS: null });
    else for (const rate of params.rates) phases.push({ kind: 'stream', name: `rate=${formatRate(rate)}`, ratePerS: rate });
  }
  if (params.http !== null) phases.push({ kind: 'http', name: 'http' });
  return phases;
}

export function formatRate(ratePerS: number): string {
  return ratePerS === Infinity ? 'inf' : String(ratePerS);
}

/** Request body (no `model`, no `stream`) for one prompt. */
export function requestBody(params: WorkloadParams, promptText: string, maxTokens: number): Record<string, unknown> {
  const body: Record<string, unknown> =
    params.endpoint === 'chat' ? { messages: [{ role: 'user', content: promptText }] } : { prompt: promptText };
  body.max_tokens = maxTokens;
  body.temperature = params.temperature;
  if (params.ignoreEos) body.ignore_eos = true;
  return body;
}

/**
 * HTTP-level load with autocannon: many keep-alive connections sending non-streamed requests as
 * fast as the server answers, one request body per request taken round-robin from a list (so the
 * server sees varied prompts, not one cached body). Measures requests/s of the whole HTTP path;
 * token timings come from sse-client.ts instead.
 *
 * autocannon is a dev dependency: it is imported only when an HTTP phase runs, so the streaming
 * workloads work from a production install too.
 */
import type { HttpSummary } from './stats.js';
import { ENDPOINT_PATHS, type Endpoint, type Target } from './sse-client.js';

export interface HttpLoadOptions {
  endpoint: Endpoint;
  /** Bodies without `model`; rotated per request. */
  bodies: readonly Record<string, unknown>[];
  connections: number;
  /** Run for this long... */
  durationS?: number;
  /** ...or until this many requests were answered (takes precedence). */
  amount?: number;
  /** Per-request timeout, s. */
  timeoutS?: number;
}

export async function runHttpLoad(target: Target, options: HttpLoadOptions): Promise<HttpSummary> {
  if (options.bodies.length === 0) throw new RangeError('http load needs at least one request body');
  let autocannon: typeof import('autocannon').default;
  try {
    autocannon = (await import('autocannon')).default;
  } catch (err) {
    throw new Error(`the HTTP phase needs autocannon, a dev dependency (npm ci without --omit=dev): ${(err as Error).message}`);
  }
  const serialized = options.bodies.map((body) => JSON.stringify({ ...body, model: target.model, stream: false }));
  let nextBody = 0;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.apiKey !== null) headers.authorization = `Bearer ${target.apiKey}`;
  // autocannon refuses more connections than requests.
  const connections = options.amount !== undefined ? Math.min(options.connections, options.amount) : options.connections;
  const result = await autocannon({
    url: target.baseUrl,
    connections,
    ...(options.amount !== undefined ? { amount: options.amount } : { duration: options.durationS ?? 10 }),
    timeout: options.timeoutS ?? 60,
    requests: [
      {
        method: 'POST',
        path: ENDPOINT_PATHS[options.endpoint],
        headers,
        setupRequest: (request) => {
          const body = serialized[nextBody % serialized.length] ?? '';
          nextBody += 1;
          return { ...request, body };
        },
      },
    ],
  });

  const errorsByKind: Record<string, number> = {};
  for (const [status, stat] of Object.entries(result.statusCodeStats)) {
    if (!status.startsWith('2')) errorsByKind[status] = stat.count;
  }
  // autocannon's `errors` counts connection errors, timeouts included.
  const networkErrors = result.errors - result.timeouts;
  if (networkErrors > 0) errorsByKind.network = networkErrors;
  if (result.timeouts > 0) errorsByKind.timeout = result.timeouts;
  const requestsOk = result['2xx'];
  const requestsFailed = result.non2xx + result.errors;
  const durationMs = result.finish.getTime() - result.start.getTime();
  return {
    kind: 'http',
    requestsTotal: requestsOk + requestsFailed,
    requestsOk,
    requestsFailed,
    durationMs,
    requestsPerS: durationMs > 0 ? requestsOk / (durationMs / 1000) : Number.NaN,
    latencyMs: {
      mean: result.latency.mean,
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    connections,
    errorsByKind,
  };
}

/**
 * Per-key request rate limits on /v1/* (@fastify/rate-limit): at most `perMinute` requests per
 * API key per minute, or per client address when auth is off. Off when perMinute is 0 (the
 * default): capacity is bounded by the scheduler's waiting queue (429 server_overloaded) anyway;
 * this limit is about fairness between callers.
 *
 * Runs after the API-key check (installApiKeyAuth's onRequest hook is global and so runs first),
 * so a bad key gets 401 and never opens a bucket. Buckets are keyed by a hash of the key: the
 * store never holds a key in clear. /health, /ready, /metrics and /version are never limited.
 * Over the limit: 429 with Retry-After and an OpenAI-style body (code rate_limit_exceeded).
 *
 * Called once by buildApp, before any route is added (the plugin hooks routes as they are added).
 */
import { createHash } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

export interface RateLimitOptions {
  /** Requests per key (or per client address) per minute; 0 = no limit. */
  perMinute: number;
  /** True when API keys are required: buckets are per key; otherwise per client address. */
  perApiKey: boolean;
}

const WINDOW_MS = 60_000;

/** The bucket a request counts against. Exported for tests. */
export function rateLimitKey(request: FastifyRequest, perApiKey: boolean): string {
  if (perApiKey) {
    const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
    if (match) return `key:${createHash('sha256').update(match[1]!.trim(), 'utf8').digest('base64url').slice(0, 22)}`;
  }
  return `ip:${request.ip}`;
}

function isLimited(url: string): boolean {
  return url === '/v1' || url.startsWith('/v1/');
}

export function installRateLimit(app: FastifyInstance, options: RateLimitOptions): void {
  if (options.perMinute <= 0) return;
  // global: false and our own hook, instead of the plugin hooking each route as it is added: buildApp
  // adds its routes synchronously, before the plugin has loaded, so they would be missed.
  let limiter: ((request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) | null = null;
  void app.register(rateLimit, { global: false });
  app.after(() => {
    limiter = app.rateLimit({
      max: options.perMinute,
      timeWindow: WINDOW_MS,
      keyGenerator: (request) => rateLimitKey(request, options.perApiKey),
      errorResponseBuilder: (_request, context) =>
        new ApiError(
          'ZMB_ERR_RATE_LIMITED',
          `rate limit reached: ${context.max} requests per minute${options.perApiKey ? ' for this API key' : ''}; retry in ${context.after}`,
          null,
          Math.max(1, Math.ceil(context.ttl / 1000)),
        ),
    });
  });
  app.addHook('onRequest', async (request, reply) => {
    if (limiter && isLimited(request.url)) await limiter(request, reply);
  });
}

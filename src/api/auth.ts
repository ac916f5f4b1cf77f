/**
 * Bearer API keys on /v1/* (health, readiness and metrics stay open, as in vLLM). Keys are
 * compared in constant time: both sides are hashed to 32 bytes and every configured key is
 * checked, so neither the key's length nor which key matched shows in the timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function keyMatches(presented: string, keys: readonly Buffer[]): boolean {
  const p = digest(presented);
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(p, k) || ok;
  return ok;
}

export function installApiKeyAuth(app: FastifyInstance, apiKeys: readonly string[]): void {
  if (apiKeys.length === 0) return;
  const digests = apiKeys.map(digest);
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/') && request.url !== '/v1') return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !keyMatches(match[1]!.trim(), digests)) {
      throw new ApiError('ZMB_ERR_INVALID_API_KEY', match ? 'invalid API key' : 'missing API key: send Authorization: Bearer <key>');
    }
  });
}

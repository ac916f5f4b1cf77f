/**
 * Liveness and readiness, for load balancers and Kubernetes probes. /health answers as long as
 * the process serves HTTP (vLLM's /health); /ready says whether new requests are accepted: the
 * engine is loaded and the server is not shutting down. Both answer 503 engine_failed once a
 * non-retryable engine error left nothing that can serve, so Kubernetes restarts the pod.
 */
import type { FastifyInstance } from 'fastify';
import { ApiError, sendApiError } from '../errors.js';
import type { ApiContext } from '../shared/context.js';

export const SERVER_VERSION = '0.1.0';

export function registerHealthRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/health', async (_request, reply) => {
    if (ctx.readiness.engineFailed?.()) return sendApiError(reply, new ApiError('ZMB_ERR_ENGINE_FAILED', 'the engine failed and cannot serve; restart the server'));
    return { status: 'ok' };
  });
  app.get('/ready', async (_request, reply) => {
    if (ctx.readiness.engineFailed?.()) return sendApiError(reply, new ApiError('ZMB_ERR_ENGINE_FAILED', 'the engine failed and cannot serve; restart the server'));
    if (!ctx.readiness.ready) return sendApiError(reply, new ApiError('ZMB_ERR_NOT_READY', 'server is not ready (starting or shutting down)'));
    return { status: 'ready', model: ctx.modelId };
  });
  app.get('/version', async () => ({ version: SERVER_VERSION }));
}

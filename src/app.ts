/**
 * buildApp(deps): the whole HTTP surface as a Fastify instance that never listens (main.ts
 * listens; tests use app.inject). Wires api/ routes over serving/ over the given scheduler.
 *
 * deps.readiness is shared with main.ts, which flips it to false when shutdown begins.
 */
import { availableParallelism } from 'node:os';
import cors from '@fastify/cors';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { installApiKeyAuth } from './api/auth.js';
import { registerChatCompletionsRoute } from './api/chat-completions/route.js';
import { registerCompletionsRoute } from './api/completions/route.js';
import { installErrorHandler, sendApiError, toApiError } from './api/errors.js';
import { clientErrorHandler, installFrameworkErrors } from './api/framework-errors.js';
import { installRateLimit } from './api/rate-limit.js';
import { registerHealthRoutes } from './api/health/route.js';
import { registerMetricsRoute } from './api/metrics/route.js';
import { ServerMetrics } from './api/metrics/server-metrics.js';
import { registerModelsRoutes } from './api/models/route.js';
import type { ApiContext, Readiness } from './api/shared/context.js';
import { servedModelId } from './config/load-config.js';
import type { ServerConfig } from './config/schema.js';
import type { EngineDescription } from './engine/engine.js';
import type { GenerationScheduler } from './scheduler/types.js';
import { GenerationService, InputProcessor, OPENAI_SAMPLING_DEFAULTS, type SamplingDefaults } from './serving/index.js';
import { EncodePool, PromptEncoder, type TextTokenizer } from './tokenizer/index.js';

export interface AppDeps {
  config: ServerConfig;
  scheduler: GenerationScheduler;
  tokenizer: TextTokenizer;
  engineDescription: EngineDescription;
  /** Pass the one the scheduler observes; a fresh one is made when absent. */
  metrics?: ServerMetrics;
  /** A pino logger; without one the app logs nothing (tests). */
  logger?: FastifyBaseLogger;
  readiness?: Readiness;
  /** From the model's generation_config.json (samplingDefaultsFrom); default: OpenAI's. */
  samplingDefaults?: SamplingDefaults;
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const { config, scheduler, tokenizer, engineDescription } = deps;
  const metrics = deps.metrics ?? new ServerMetrics();
  metrics.bindScheduler(() => scheduler.stats());
  // Shared with main.ts (it flips `ready` at shutdown), so extended in place, never copied.
  const readiness = deps.readiness ?? { ready: true };
  readiness.engineFailed ??= () => scheduler.failed;
  const encodePool = makeEncodePool(config, tokenizer);
  const maxModelLen = Math.min(config.maxModelLen ?? engineDescription.maxModelLen, engineDescription.maxModelLen);
  const ctx: ApiContext = {
    config,
    modelId: config.servedModelName ?? (engineDescription.modelId || servedModelId(config)),
    maxModelLen,
    tokenizer,
    input: new InputProcessor(tokenizer, maxModelLen, new PromptEncoder(tokenizer, { pool: encodePool, minPooledChars: config.tokenizerWorkerMinChars })),
    service: new GenerationService({ scheduler, tokenizer, observer: metrics }),
    samplingDefaults: deps.samplingDefaults ?? OPENAI_SAMPLING_DEFAULTS,
    metrics,
    readiness,
  };

  const app: FastifyInstance = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: config.bodyLimitBytes,
    // Request lines (method, url, status, time) only with --log-requests; never bodies by default.
    logController: new LogController({ disableRequestLogging: !config.logRequests }),
    requestIdHeader: 'x-request-id',
    // request.ip (the per-address rate-limit bucket, logs) comes from X-Forwarded-For only via the
    // proxies this trusts; off by default, since any client can write that header.
    trustProxy: config.trustProxy,
    // Requests in the window after close() get the catalogue's 503 from installFrameworkErrors instead.
    return503OnClosing: false,
    clientErrorHandler,
    // Errors raised before routing (a malformed URL such as /v1/models/%E0%A4%A) get the OpenAI body too.
    frameworkErrors: (err, _request, reply) => sendApiError(reply, toApiError(err)),
  });
  // Any Content-Type is read as JSON (as vLLM does), so `curl -d '{...}'` works without -H.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      const e = err as Error & { statusCode?: number };
      e.statusCode = 400;
      done(e, undefined);
    }
  });
  if (encodePool) {
    // Only a listening server starts its workers up front; inject-only apps (tests) start them on first use.
    app.addHook('onListen', async () => encodePool.warmUp());
    app.addHook('onClose', async () => encodePool.close());
  }
  installErrorHandler(app);
  // First of the onRequest hooks (a closing server answers 503, not 401/429), and before any route (405s).
  installFrameworkErrors(app);
  if (config.corsOrigins.length > 0) void app.register(cors, { origin: config.corsOrigins.includes('*') ? true : config.corsOrigins });
  installApiKeyAuth(app, config.apiKey);
  installRateLimit(app, { perMinute: config.rateLimitPerMinute, perApiKey: config.apiKey.length > 0 });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    // Streams count themselves when they end (their reply is hijacked).
    if (!reply.sent || reply.statusCode !== 200 || !reply.raw.getHeader('content-type')?.toString().startsWith('text/event-stream')) {
      metrics.countRequest(route, reply.statusCode);
    }
  });

  registerHealthRoutes(app, ctx);
  registerMetricsRoute(app, ctx);
  registerModelsRoutes(app, ctx, Math.floor(Date.now() / 1000));
  registerChatCompletionsRoute(app, ctx);
  registerCompletionsRoute(app, ctx);
  return app;
}

/** The prompt-tokenizing worker pool, or null when encoding stays inline (0 workers, or a tokenizer without files). */
function makeEncodePool(config: ServerConfig, tokenizer: TextTokenizer): EncodePool | null {
  const workers = config.tokenizerWorkers ?? Math.min(2, availableParallelism() - 1);
  if (workers <= 0 || tokenizer.encoderSource === undefined) return null;
  // A prompt waiting for a tokenizer worker is a request waiting for admission: the same bound as the
  // scheduler's waiting queue (at least 1), beyond which requests get 429 server_overloaded.
  return new EncodePool(tokenizer.encoderSource, workers, Math.max(1, config.maxWaiting));
}

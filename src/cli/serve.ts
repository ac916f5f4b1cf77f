/**
 * Start-up and shutdown of a server: config → model folder → tokenizer → engine(s) → scheduler →
 * app.listen. Used by the CLI (src/main.ts) and by end-to-end tests (port 0, fake engine).
 * With --data-parallel N there are N engines (cuda: one per GPU index), each with its own
 * Scheduler, behind a DataParallelScheduler.
 *
 * close(): see gracefulShutdown (src/cli/shutdown.ts): readiness false first, stop admitting, let
 * running requests finish up to the grace period, cut the rest, then close HTTP, scheduler, engines.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { buildApp } from '../app.js';
import { ServerMetrics } from '../api/metrics/server-metrics.js';
import type { Readiness } from '../api/shared/context.js';
import { servedModelId } from '../config/load-config.js';
import type { ServerConfig } from '../config/schema.js';
import type { Engine } from '../engine/engine.js';
import { createEngine } from '../engine/index.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../model/hub.js';
import { readGenerationConfig } from '../model/model-files.js';
import { samplingDefaultsFrom } from '../serving/index.js';
import { DataParallelScheduler, type ServingScheduler } from '../scheduler/data-parallel.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { gracefulShutdown } from './shutdown.js';

export interface RunningServer {
  app: FastifyInstance;
  /** http://host:port of the listening socket. */
  url: string;
  port: number;
  readiness: Readiness;
  /** The first engine (the only one without --data-parallel). */
  engine: Engine;
  engines: Engine[];
  scheduler: ServingScheduler;
  logger: Logger;
  /** Graceful shutdown (idempotent). */
  close(): Promise<void>;
}

export interface StartServerOptions {
  /** Default: a pino logger at config.logLevel writing JSON lines to stdout. */
  logger?: Logger;
}

/** Start-up failure with a message meant for the operator (no stack trace needed). */
export class StartupError extends Error {
  override name = 'StartupError';
}

export async function startServer(config: ServerConfig, options: StartServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'zamba2-serve' } });
  const modelId = servedModelId(config);
  const resolved = await resolveModel(config.model, {
    ...(config.downloadDir ? { cacheDir: config.downloadDir } : {}),
    progress: config.logLevel === 'silent' ? null : process.stderr,
  });
  let tokenizer;
  try {
    tokenizer = loadTokenizer(resolved.dir);
  } catch (err) {
    throw new StartupError(`cannot load the tokenizer of ${resolved.dir}: ${(err as Error).message}`);
  }
  if (tokenizer.wordPieces && !tokenizer.wordPieces.applied) {
    logger.info({ reason: tokenizer.wordPieces.reason }, 'tokenizer: prompts go to BPE as one word (slower encoding)');
  }
  const eosTokenId = tokenizer.eosTokenIds[0] ?? 2;
  const generationConfigPath = join(resolved.dir, 'generation_config.json');
  const samplingDefaults = samplingDefaultsFrom(existsSync(generationConfigPath) ? readGenerationConfig(generationConfigPath).raw : null);
  const engines: Engine[] = [];
  let scheduler: ServingScheduler | null = null;
  try {
    for (let replica = 0; replica < config.dataParallel; replica++) {
      const deviceIndex = config.dataParallel > 1 ? { deviceIndex: replica } : {};
      engines.push(await createEngine(config, { modelDir: resolved.dir, modelId, vocabSize: tokenizer.vocabSize, eosTokenId, logger, ...deviceIndex }));
    }
    const engine = engines[0]!;
    const description = engine.describe();
    const maxModelLen = Math.min(config.maxModelLen ?? description.maxModelLen, description.maxModelLen);
    const metrics = new ServerMetrics({ defaultMetrics: true });
    const replicas = engines.map(
      (replicaEngine, replica) =>
        new Scheduler(
          replicaEngine,
          {
            maxNumSeqs: config.maxNumSeqs,
            maxNumBatchedTokens: config.maxNumBatchedTokens,
            maxModelLen,
            maxWaiting: config.maxWaiting,
            cacheFraction: config.cacheFraction,
          },
          { logger: logger.child({ component: 'scheduler', ...(engines.length > 1 ? { replica } : {}) }), observer: metrics },
        ),
    );
    scheduler = replicas.length === 1 ? replicas[0]! : new DataParallelScheduler(replicas);
    await scheduler.start();
    const readiness: Readiness = { ready: false };
    const app = buildApp({
      config: { ...config, servedModelName: modelId },
      scheduler,
      tokenizer,
      engineDescription: description,
      metrics,
      logger,
      readiness,
      samplingDefaults,
    });
    if (config.trustProxy === true && config.rateLimitPerMinute > 0 && config.apiKey.length === 0) {
      logger.warn(
        'trustProxy is true and rate limits are per client address: any client can pick its address with X-Forwarded-For; list your proxies instead (--trust-proxy 10.0.0.5,10.0.0.6)',
      );
    }
    await app.listen({ host: config.host, port: config.port });
    readiness.ready = true;
    const address = app.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`;
    logger.info(
      { model: modelId, device: config.device, dtype: description.dtype, maxModelLen, url, apiKeys: config.apiKey.length, rateLimitPerMinute: config.rateLimitPerMinute, dataParallel: engines.length, samplingDefaults },
      'zamba2-serve ready',
    );
    let closing: Promise<void> | null = null;
    const running: RunningServer = {
      app,
      url,
      port: address.port,
      readiness,
      engine,
      engines,
      scheduler,
      logger,
      close: () => {
        closing ??= gracefulShutdown({ app, readiness, scheduler: scheduler!, engines, logger }, { drainMs: config.shutdownGraceSeconds * 1000 }).then(
          () => undefined,
        );
        return closing;
      },
    };
    return running;
  } catch (err) {
    await scheduler?.close().catch(() => undefined);
    await Promise.all(engines.map((e) => e.close().catch(() => undefined)));
    throw err;
  }
}

/**
 * Graceful shutdown of a running server, in the order a load balancer needs:
 *   1. readiness false: /ready answers 503, so Kubernetes / the balancer stops sending traffic;
 *   2. the scheduler stops admitting: a new generation request gets 503 `shutting_down`;
 *   3. running requests get up to `drainMs` to finish; what is left then is cut: a stream ends with
 *      an error event (code shutting_down) and `data: [DONE]`, a non-streaming request gets 503;
 *   4. HTTP closes: the listener stops, idle keep-alive sockets close, and responses still being
 *      written (the cut requests' last bytes) get `socketGraceMs` before their sockets are closed,
 *      so a client that stopped reading cannot hold the process;
 *   5. scheduler and engines close.
 * Each step is logged with counts. Called by RunningServer.close (src/cli/serve.ts); the CLI calls
 * that on SIGTERM/SIGINT and exits 0 when it resolves.
 */
import type { FastifyInstance } from 'fastify';
import type { Readiness } from '../api/shared/context.js';
import type { Engine } from '../engine/engine.js';
import type { ServingScheduler } from '../scheduler/data-parallel.js';

export interface ShutdownTarget {
  app: FastifyInstance;
  readiness: Readiness;
  scheduler: ServingScheduler;
  engines: readonly Engine[];
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export interface ShutdownOptions {
  /** How long running requests may take to finish before they are cut. */
  drainMs: number;
  /** How long cut responses may take to reach their clients before their sockets are closed. Default 5000. */
  socketGraceMs?: number;
}

export interface ShutdownSummary {
  /** Sequences running or waiting when shutdown began. */
  inFlightAtStart: number;
  /** Sequences still unfinished at the drain deadline (cut). */
  cut: number;
  drainedMs: number;
}

export async function gracefulShutdown(target: ShutdownTarget, options: ShutdownOptions): Promise<ShutdownSummary> {
  const { app, readiness, scheduler, engines, logger } = target;
  readiness.ready = false;
  const atStart = scheduler.stats();
  const inFlightAtStart = atStart.running + atStart.waiting;
  logger.info({ inFlight: inFlightAtStart, drainMs: options.drainMs }, 'shutting down: not ready, draining running requests');
  const started = performance.now();
  // Count what is still there when the deadline comes: this timer is armed before drain()'s own
  // (same delay), so it fires first, just before drain() aborts the rest.
  let cut = 0;
  const deadlineProbe = setTimeout(() => {
    const s = scheduler.stats();
    cut = s.running + s.waiting;
  }, Math.max(0, options.drainMs));
  await scheduler.drain(options.drainMs);
  clearTimeout(deadlineProbe);
  const drainedMs = Math.round(performance.now() - started);
  if (cut > 0) logger.warn({ cut, drainedMs }, 'drain timeout: cut the unfinished requests');
  else logger.info({ drainedMs }, 'drained: every running request finished');

  const socketGraceMs = options.socketGraceMs ?? 5000;
  const forceClose = setTimeout(() => {
    logger.warn({ socketGraceMs }, 'closing the sockets of responses still being written');
    app.server.closeAllConnections();
  }, socketGraceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(forceClose);
  }
  await scheduler.close();
  await Promise.all(engines.map((e) => e.close()));
  logger.info({ inFlightAtStart, cut, drainedMs }, 'shutdown complete');
  return { inFlightAtStart, cut, drainedMs };
}

/**
 * Helpers of the fault tests (test/e2e/fault-*.test.ts): a listening server built from the real
 * parts (buildApp, Scheduler or DataParallelScheduler, FakeEngines whose steps can be made to fail),
 * a streaming reader, status counting, and the soak switch.
 *
 * FAULT_SOAK=1 (npm run test:soak) multiplies the sizes of the fault tests; `npm test` runs the
 * sizes the issue names, each well under 20 s on 2 cores.
 */
import type { AddressInfo } from 'node:net';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { ServerConfig } from '../../src/config/schema.js';
import { FakeEngine, type FakeEngineOptions } from '../../src/engine/fake/fake-engine.js';
import { DataParallelScheduler, type ServingScheduler } from '../../src/scheduler/data-parallel.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { testTokenizer } from '../helpers/tokenizer-fixture.js';

export const SOAK = process.env.FAULT_SOAK === '1';

/** `n` in `npm test`, `n * factor` under FAULT_SOAK=1. */
export function size(n: number, soakFactor: number): number {
  return SOAK ? n * soakFactor : n;
}

export const MODEL = 'zamba2-fake';

export interface FaultServer {
  url: string;
  scheduler: ServingScheduler;
  engines: FakeEngine[];
  close(): Promise<void>;
}

/** The real HTTP stack over FakeEngine replicas (one per entry of `engines`), listening on 127.0.0.1:0. */
export async function startFaultServer(engines: FakeEngineOptions[], config: Partial<ServerConfig> = {}): Promise<FaultServer> {
  const tokenizer = testTokenizer();
  const fakes = engines.map((o) => new FakeEngine({ modelId: MODEL, vocabSize: tokenizer.vocabSize, maxModelLen: 1024, ...o }));
  const options = { maxNumSeqs: 64, maxNumBatchedTokens: 1024, maxModelLen: 1024, maxWaiting: 1000 };
  const replicas = fakes.map((e) => new Scheduler(e, options));
  const scheduler: ServingScheduler = replicas.length === 1 ? replicas[0]! : new DataParallelScheduler(replicas);
  await scheduler.start();
  const fullConfig: ServerConfig = { ...loadConfig(), device: 'fake', logLevel: 'silent', servedModelName: MODEL, ...config };
  const app = buildApp({ config: fullConfig, scheduler, tokenizer, engineDescription: fakes[0]!.describe() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    scheduler,
    engines: fakes,
    close: async () => {
      await app.close();
      await scheduler.close();
      await Promise.all(fakes.map((e) => e.close()));
    },
  };
}

export function postJson(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });
}

/** Every `data:` payload of an SSE body: parsed JSON, or the string "[DONE]". */
export function ssePayloads(raw: string): unknown[] {
  return raw
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => block.slice(6))
    .map((data) => (data === '[DONE]' ? data : (JSON.parse(data) as unknown)));
}

/** Reads a streaming response to its end; `onChunk` sees the text so far after every read. */
export async function readStream(res: Response, onChunk?: (textSoFar: string) => void): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    onChunk?.(text);
  }
  return text;
}

/** Waits (up to `limitMs`) until the scheduler holds nothing: no sequence, slot or page. */
export async function waitForIdle(scheduler: ServingScheduler, limitMs = 10_000): Promise<void> {
  const until = Date.now() + limitMs;
  while (Date.now() < until) {
    const s = scheduler.stats();
    if (s.running === 0 && s.waiting === 0 && s.slotsUsed === 0 && s.pagesUsed === 0 && scheduler.liveSequenceMemory === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Status → count, printed in a stable order. */
export function countStatuses(statuses: readonly (number | string)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of [...statuses].map(String).sort()) out[s] = (out[s] ?? 0) + 1;
  return out;
}

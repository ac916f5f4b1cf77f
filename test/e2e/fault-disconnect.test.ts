/**
 * Fault: 500 clients hang up mid-stream (after 1–5 chunks, right after the headers, or before
 * any response), twice over. After each round every sequence, state slot and KV page is back to
 * zero, and the process heap (after a full GC) does not grow from round to round.
 * FAULT_SOAK=1: 5,000 clients per round.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startTestServer, type TestServer } from '../helpers/start-server.js';
import { MODEL, size, waitForIdle } from './fault-server.js';

const CLIENTS = size(500, 10);
const MiB = 1024 * 1024;

let server: TestServer;

before(async () => {
  server = await startTestServer({ fakeStepLatencyMs: 2, maxNumSeqs: 64, maxNumBatchedTokens: 512, maxWaiting: 10_000 });
});

after(async () => {
  await server.stop();
});

/** A full GC when the runtime allows one (--expose-gc turned on at run time), else null. */
function gcFunction(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

const gc = gcFunction();

function memory(): { heapUsedMiB: number; rssMiB: number } {
  if (gc) for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return { heapUsedMiB: Math.round((m.heapUsed / MiB) * 10) / 10, rssMiB: Math.round((m.rss / MiB) * 10) / 10 };
}

type HangUp = 'after-chunks' | 'after-headers' | 'before-response';

async function hangUpClient(i: number): Promise<HangUp> {
  const how: HangUp = i % 10 === 3 ? 'before-response' : i % 10 === 7 ? 'after-headers' : 'after-chunks';
  const controller = new AbortController();
  const chat = i % 2 === 0;
  const body = chat
    ? { model: MODEL, messages: [{ role: 'user', content: `client ${i} says hello` }], max_tokens: 500, ignore_eos: true, stream: true, n: i % 7 === 0 ? 2 : 1 }
    : { model: MODEL, prompt: `client ${i}: once upon a time`, max_tokens: 500, ignore_eos: true, stream: true, logprobs: i % 5 === 0 ? 2 : null };
  const pending = fetch(`${server.url}${chat ? '/v1/chat/completions' : '/v1/completions'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  if (how === 'before-response') {
    // Give the request time to reach the server and be submitted, then hang up unanswered.
    setTimeout(() => controller.abort(), 1 + (i % 20));
    await pending.catch(() => undefined);
    return how;
  }
  const res = await pending;
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  if (how === 'after-chunks') {
    const chunks = 1 + (i % 5);
    for (let k = 0; k < chunks; k++) if ((await reader.read()).done) break;
  }
  controller.abort();
  await reader.cancel().catch(() => undefined);
  return how;
}

async function round(clients: number): Promise<Record<HangUp, number>> {
  // At most 500 connections at once: more would overflow the listen backlog (511) and measure the
  // kernel's SYN queue, not the server. The soak's 5,000 clients come as 500 overlapping streams.
  const kinds: HangUp[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(clients, 500) }, async () => {
      while (next < clients) {
        const i = next++;
        kinds.push(await hangUpClient(i));
      }
    }),
  );
  const counts: Record<HangUp, number> = { 'after-chunks': 0, 'after-headers': 0, 'before-response': 0 };
  for (const k of kinds) counts[k]++;
  await waitForIdle(server.scheduler, 30_000);
  const s = server.scheduler.stats();
  assert.deepEqual(
    { running: s.running, waiting: s.waiting, slotsUsed: s.slotsUsed, pagesUsed: s.pagesUsed, liveSequences: server.scheduler.liveSequenceMemory },
    { running: 0, waiting: 0, slotsUsed: 0, pagesUsed: 0, liveSequences: 0 },
  );
  return counts;
}

test(`${CLIENTS} clients hanging up mid-stream, twice: slots, pages and heap return`, async (t) => {
  await round(50); // warm-up: JIT, tokenizer caches, connection pool
  const before = memory();
  const first = await round(CLIENTS);
  const afterFirst = memory();
  await round(CLIENTS);
  const afterSecond = memory();
  const s = server.scheduler.stats();
  t.diagnostic(`disconnect rounds: 2 × ${CLIENTS} clients, hang-ups per round ${JSON.stringify(first)}`);
  t.diagnostic(`after each round: running ${s.running}, waiting ${s.waiting}, slots ${s.slotsUsed}/${s.slotsTotal}, pages ${s.pagesUsed}/${s.pagesTotal}`);
  t.diagnostic(
    `memory (${gc ? 'heapUsed after full GC' : 'no GC available'}): before ${JSON.stringify(before)}, after round 1 ${JSON.stringify(afterFirst)}, after round 2 ${JSON.stringify(afterSecond)}`,
  );
  // The server still serves normally.
  const ok = await fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL, prompt: 'still here', max_tokens: 3, ignore_eos: true }) });
  assert.equal(ok.status, 200);
  // Per-request state that leaked would grow the heap by the same amount each round; allow noise.
  assert.ok(gc, 'a full GC is available (v8 --expose-gc at run time)');
  assert.ok(afterSecond.heapUsedMiB - afterFirst.heapUsedMiB < 8, `heap grew ${afterSecond.heapUsedMiB - afterFirst.heapUsedMiB} MiB in round 2`);
  assert.ok(afterSecond.heapUsedMiB - before.heapUsedMiB < 24, `heap grew ${afterSecond.heapUsedMiB - before.heapUsedMiB} MiB over both rounds`);
});

/**
 * Load: hundreds of concurrent streaming requests against the real server (fake engine, real
 * scheduler, real tokenizer, real HTTP). Every stream completes exactly once with the right token
 * count, clients that hang up free their sequences, outputs do not depend on the batch they ran
 * in, and the scheduler's slots and pages return to zero.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/start-server.js';

const MODEL = 'zamba2-fake';
const REQUESTS = 300;

let server: TestServer;

before(async () => {
  // Few slots and a small step budget relative to the load: admission queues, chunked prefill and
  // mixed decode/prefill steps all happen.
  server = await startTestServer({ fakeStepLatencyMs: 1, maxNumSeqs: 48, maxNumBatchedTokens: 256, maxWaiting: 1000 });
});

after(async () => {
  await server.stop();
});

interface Spec {
  prompt: number[];
  maxTokens: number;
  n: number;
  hangUp: boolean;
}

function spec(i: number): Spec {
  const promptLength = 3 + ((i * 37) % 150);
  return {
    prompt: Array.from({ length: promptLength }, (_, k) => 100 + ((i * 131 + k * 17) % 20000)),
    maxTokens: 1 + ((i * 13) % 48),
    n: i % 15 === 0 ? 2 : 1,
    hangUp: i % 10 === 7,
  };
}

function body(s: Spec, stream: boolean): string {
  return JSON.stringify({
    model: MODEL,
    prompt: s.prompt,
    max_tokens: s.maxTokens,
    n: s.n,
    temperature: 0,
    ignore_eos: true,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });
}

interface StreamResult {
  texts: string[];
  finishReasons: Array<Array<string>>;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  done: number;
}

function parseStream(raw: string, n: number): StreamResult {
  const out: StreamResult = { texts: Array(n).fill(''), finishReasons: Array.from({ length: n }, () => []), usage: null, done: 0 };
  for (const block of raw.split('\n\n')) {
    if (!block.startsWith('data: ')) continue;
    const data = block.slice(6);
    if (data === '[DONE]') {
      out.done++;
      continue;
    }
    const chunk = JSON.parse(data) as { choices: Array<{ index: number; text: string; finish_reason: string | null }>; usage?: StreamResult['usage'] };
    for (const c of chunk.choices) {
      out.texts[c.index] += c.text;
      if (c.finish_reason !== null) out.finishReasons[c.index]!.push(c.finish_reason);
    }
    if (chunk.usage) out.usage = chunk.usage;
  }
  return out;
}

async function post(payload: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload, ...(signal ? { signal } : {}) });
}

/** Read until the first data chunk arrives, then hang up. */
async function hangUpAfterFirstChunk(s: Spec): Promise<void> {
  const controller = new AbortController();
  const res = await post(body(s, true), controller.signal);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  controller.abort();
  await reader.cancel().catch(() => undefined);
}

async function waitForIdle(): Promise<void> {
  // The server learns of hang-ups from socket 'close' events: give them a moment to arrive.
  for (let i = 0; i < 400; i++) {
    const s = server.scheduler.stats();
    if (s.running === 0 && s.waiting === 0 && s.slotsUsed === 0 && s.pagesUsed === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
}

test(`${REQUESTS} concurrent streaming requests each complete exactly once with the right token count`, async () => {
  const specs = Array.from({ length: REQUESTS }, (_, i) => spec(i));
  const results = await Promise.all(
    specs.map(async (s) => {
      if (s.hangUp) {
        await hangUpAfterFirstChunk(s);
        return null;
      }
      const res = await post(body(s, true));
      assert.equal(res.status, 200);
      return parseStream(await res.text(), s.n);
    }),
  );

  let completed = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const s = specs[i]!;
    const r = results[i];
    if (!r) continue;
    completed++;
    assert.equal(r.done, 1, `request ${i}: one [DONE]`);
    for (let k = 0; k < s.n; k++) assert.deepEqual(r.finishReasons[k], ['length'], `request ${i}.${k}: finished exactly once`);
    assert.deepEqual(r.usage, { prompt_tokens: s.prompt.length, completion_tokens: s.n * s.maxTokens, total_tokens: s.prompt.length + s.n * s.maxTokens }, `request ${i}: usage`);
  }
  assert.equal(completed, REQUESTS - specs.filter((s) => s.hangUp).length);

  await waitForIdle();
  const stats = server.scheduler.stats();
  assert.deepEqual(
    { running: stats.running, waiting: stats.waiting, slotsUsed: stats.slotsUsed, pagesUsed: stats.pagesUsed },
    { running: 0, waiting: 0, slotsUsed: 0, pagesUsed: 0 },
  );
  assert.equal(server.scheduler.liveSequenceMemory, 0);

  // The same requests one at a time (not streamed) give the same text: batching changed nothing.
  for (let i = 0; i < REQUESTS; i += 23) {
    const s = specs[i]!;
    const r = results[i];
    if (!r) continue;
    const res = await post(body(s, false));
    assert.equal(res.status, 200);
    const json = (await res.json()) as { choices: Array<{ index: number; text: string }> };
    for (const c of json.choices) assert.equal(c.text, r.texts[c.index], `request ${i}.${c.index}: same text alone`);
  }
});

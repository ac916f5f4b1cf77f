/**
 * Fault: the engine's step throws. The requests in that step fail cleanly (a stream gets an error
 * event and [DONE], a non-streaming request a 500 generation_failed without engine detail), the
 * server stays up and serves the next request, and the failed requests' memory is returned.
 * A fatal (non-retryable) engine error on one of two data-parallel replicas: the other replica
 * takes every later request; on a single replica later requests get a clean 503, never a hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineError } from '../../src/engine/engine.js';
import { MODEL, countStatuses, postJson, readStream, ssePayloads, startFaultServer, waitForIdle } from './fault-server.js';

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

function streamErrors(raw: string): ErrorBody[] {
  return ssePayloads(raw).filter((p): p is ErrorBody => typeof p === 'object' && p !== null && 'error' in p);
}

test('a failing step: its requests get 500 / an error event, the server serves the next request', async (t) => {
  let failArmed = false;
  let failures = 0;
  const server = await startFaultServer([
    {
      stepLatencyMs: 3,
      failOnStep: () => {
        if (!failArmed) return undefined;
        failArmed = false;
        failures++;
        return true;
      },
    },
  ]);
  try {
    const long = { model: MODEL, max_tokens: 400, ignore_eos: true, temperature: 0 };
    const streams = Array.from({ length: 6 }, (_, i) =>
      postJson(`${server.url}/v1/chat/completions`, { ...long, stream: true, messages: [{ role: 'user', content: `stream ${i}` }] }),
    );
    const plain = Array.from({ length: 6 }, (_, i) => postJson(`${server.url}/v1/completions`, { ...long, prompt: `plain ${i}` }));
    // Arm the fault once all twelve requests are running and every stream has produced chunks.
    const started = new Set<number>();
    const streamTexts = streams.map(async (p, i) => {
      const res = await p;
      assert.equal(res.status, 200);
      return readStream(res, (text) => {
        if (text.split('data: ').length > 3) started.add(i);
      });
    });
    for (let polls = 0; started.size < streams.length || server.scheduler.stats().running < streams.length + plain.length; polls++) {
      assert.ok(polls < 5000, 'the twelve requests never all ran');
      await new Promise((r) => setTimeout(r, 2));
    }
    failArmed = true;
    const streamBodies = await Promise.all(streamTexts);
    const plainResponses = await Promise.all(plain);
    const plainBodies = await Promise.all(plainResponses.map((r) => r.json() as Promise<ErrorBody>));

    assert.equal(failures, 1);
    for (const raw of streamBodies) {
      const errors = streamErrors(raw);
      assert.equal(errors.length, 1, raw.slice(-300));
      assert.equal(errors[0]!.error.code, 'generation_failed');
      assert.ok(raw.endsWith('data: [DONE]\n\n'));
      assert.doesNotMatch(raw, /"finish_reason":"length"/);
    }
    for (let i = 0; i < plainResponses.length; i++) {
      assert.equal(plainResponses[i]!.status, 500);
      assert.equal(plainBodies[i]!.error.code, 'generation_failed');
      assert.equal(plainBodies[i]!.error.type, 'server_error');
      assert.doesNotMatch(plainBodies[i]!.error.message, /injected/, 'engine detail stays in the log');
    }
    await waitForIdle(server.scheduler);
    assert.equal(server.scheduler.liveSequenceMemory, 0);

    // The server stays up: health, readiness, and the next requests succeed.
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    const next = await postJson(`${server.url}/v1/completions`, { model: MODEL, prompt: 'after the fault', max_tokens: 8, ignore_eos: true });
    assert.equal(next.status, 200);
    assert.equal(((await next.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 8);
    const nextStream = await postJson(`${server.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'again' }], max_tokens: 5, ignore_eos: true, stream: true });
    const nextRaw = await readStream(nextStream);
    assert.match(nextRaw, /"finish_reason":"length"/);
    assert.equal(streamErrors(nextRaw).length, 0);
    const inFault = countStatuses([...streams.map(() => '200+error-event'), ...plainResponses.map((r) => r.status)]);
    t.diagnostic(`engine step fault: 12 requests in the failing step → ${JSON.stringify(inFault)}; the 2 next requests → ${next.status}, ${nextStream.status}`);
  } finally {
    await server.close();
  }
});

test('a fatal engine error on one of two replicas: the other serves every later request', async (t) => {
  let dead = false;
  const server = await startFaultServer([
    { stepLatencyMs: 2, failOnStep: () => (dead ? new EngineError('device lost', 'TEST_DEVICE_LOST', false) : undefined) },
    { stepLatencyMs: 2 },
  ]);
  try {
    dead = true;
    // Both replicas idle: the first request lands on replica 0 and fails with its engine.
    const doomed = await postJson(`${server.url}/v1/completions`, { model: MODEL, prompt: 'doomed', max_tokens: 4 });
    assert.equal(doomed.status, 500);
    const later = await Promise.all(
      Array.from({ length: 20 }, (_, i) => postJson(`${server.url}/v1/completions`, { model: MODEL, prompt: `later ${i}`, max_tokens: 4, ignore_eos: true })),
    );
    const statuses = countStatuses(later.map((r) => r.status));
    assert.deepEqual(statuses, { '200': 20 });
    // One live replica keeps the process worth routing to.
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    t.diagnostic(`fatal error on replica 0 of 2: first request 500, next 20 → ${JSON.stringify(statuses)}`);
  } finally {
    await server.close();
  }
});

test('a fatal engine error on the only replica: later requests get a clean 503 engine_failed, /health and /ready fail so the orchestrator restarts it', async () => {
  let dead = false;
  const server = await startFaultServer([{ failOnStep: () => (dead ? new EngineError('device lost', 'TEST_DEVICE_LOST', false) : undefined) }]);
  try {
    dead = true;
    const doomed = await postJson(`${server.url}/v1/completions`, { model: MODEL, prompt: 'doomed', max_tokens: 4, stream: true });
    const raw = await readStream(doomed);
    assert.equal(streamErrors(raw)[0]?.error.code, 'generation_failed');
    assert.ok(raw.endsWith('data: [DONE]\n\n'));
    const later = await postJson(`${server.url}/v1/completions`, { model: MODEL, prompt: 'later', max_tokens: 4 });
    assert.equal(later.status, 503);
    const laterBody = (await later.json()) as ErrorBody;
    assert.equal(laterBody.error.type, 'server_error');
    assert.equal(laterBody.error.code, 'engine_failed');
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 503);
    assert.equal(((await health.json()) as ErrorBody).error.code, 'engine_failed');
    assert.equal((await fetch(`${server.url}/ready`)).status, 503);
  } finally {
    await server.close();
  }
});

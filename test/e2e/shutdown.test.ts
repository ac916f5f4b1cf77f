/**
 * Graceful shutdown of the real server: readiness goes false first, new requests get 503, a
 * request already streaming runs to its end ([DONE]), then close() resolves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../helpers/start-server.js';

test('close(): not ready, refuses new work, finishes running streams', async () => {
  const server = await startTestServer({ fakeStepLatencyMs: 5, shutdownGraceSeconds: 30 });
  let stopped = false;
  try {
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Hello', max_tokens: 40, stream: true, ignore_eos: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done);
    const closing = server.stop().then(() => (stopped = true));
    // Readiness flips synchronously at the start of close().
    assert.equal(server.readiness.ready, false);
    const refused = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Hello', max_tokens: 2 }),
    }).catch((err: unknown) => err);
    // Either the 503 of a draining scheduler or, if the socket already closed, a refused connection.
    if (refused instanceof Response) assert.equal(refused.status, 503);
    let body = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += new TextDecoder().decode(value);
    }
    assert.ok(body.endsWith('data: [DONE]\n\n'), body.slice(-200));
    assert.match(body, /"finish_reason":"length"/);
    await closing;
    assert.equal(stopped, true);
  } finally {
    if (!stopped) await server.stop().catch(() => undefined);
  }
});

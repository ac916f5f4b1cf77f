import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runHttpLoad } from '../../../src/bench/http-load.js';
import { closeTarget, createTarget } from '../../../src/bench/sse-client.js';
import { startTinyServer } from './tiny-openai-server.js';

test('autocannon sends non-streamed requests with bodies rotated per request', async () => {
  const server = await startTinyServer();
  const target = createTarget(server.baseUrl, 'tiny-model', null);
  try {
    const bodies = [0, 1, 2].map((i) => ({ messages: [{ role: 'user', content: `prompt ${i}` }], max_tokens: 2 }));
    const summary = await runHttpLoad(target, { endpoint: 'chat', bodies, connections: 2, amount: 12 });
    assert.equal(summary.kind, 'http');
    assert.equal(summary.requestsOk, 12);
    assert.equal(summary.requestsFailed, 0);
    assert.deepEqual(summary.errorsByKind, {});
    assert.ok(summary.requestsPerS > 0);
    assert.equal(server.bodies.length, 12);
    const contents = server.bodies.map((b) => (b.messages as Array<{ content: string }>)[0]?.content);
    assert.deepEqual(new Set(contents), new Set(['prompt 0', 'prompt 1', 'prompt 2']));
    for (const b of server.bodies) {
      assert.equal(b.stream, false);
      assert.equal(b.model, 'tiny-model');
    }
  } finally {
    closeTarget(target);
    await server.close();
  }
});

test('non-2xx answers are counted by status', async () => {
  const server = await startTinyServer({ failWithStatus: 503 });
  const target = createTarget(server.baseUrl, 'tiny-model', null);
  try {
    const summary = await runHttpLoad(target, { endpoint: 'completions', bodies: [{ prompt: 'x', max_tokens: 1 }], connections: 1, amount: 5 });
    assert.equal(summary.requestsOk, 0);
    assert.deepEqual(summary.errorsByKind, { '503': 5 });
    assert.equal(summary.requestsFailed, 5);
  } finally {
    closeTarget(target);
    await server.close();
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeTarget, createTarget, sendStreamingRequest } from '../../../src/bench/sse-client.js';
import { startTinyServer, type TinyServerOptions } from './tiny-openai-server.js';

async function oneRequest(serverOptions: TinyServerOptions, endpoint: 'chat' | 'completions' = 'chat', maxTokens = 5, idleTimeoutMs?: number) {
  const server = await startTinyServer(serverOptions);
  const target = createTarget(server.baseUrl, 'tiny-model', 'secret', idleTimeoutMs);
  try {
    const body = endpoint === 'chat' ? { messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens } : { prompt: 'hi', max_tokens: maxTokens };
    const record = await sendStreamingRequest(target, endpoint, body);
    return { record, sent: server.bodies };
  } finally {
    closeTarget(target);
    await server.close();
  }
}

test('a chat stream is timed chunk by chunk and counted from usage', async () => {
  const { record, sent } = await oneRequest({}, 'chat', 5);
  assert.equal(record.ok, true);
  assert.equal(record.status, 200);
  assert.equal(record.errorKind, null);
  // The role-only first chunk has no text: it neither starts TTFT nor counts as a chunk.
  assert.equal(record.chunkTimesMs.length, 5);
  assert.equal(record.outputTokens, 5);
  assert.equal(record.promptTokens, 7);
  assert.equal(record.finishReason, 'length');
  assert.ok(record.ttftMs !== null && record.ttftMs === record.chunkTimesMs[0]);
  assert.ok(record.e2eMs >= (record.chunkTimesMs.at(-1) ?? Infinity));
  for (let i = 1; i < record.chunkTimesMs.length; i++) assert.ok((record.chunkTimesMs[i] ?? 0) >= (record.chunkTimesMs[i - 1] ?? 0));
  assert.deepEqual(sent[0]?.stream_options, { include_usage: true });
  assert.equal(sent[0]?.stream, true);
  assert.equal(sent[0]?.model, 'tiny-model');
});

test('completions streams and events split across reads are reassembled', async () => {
  const { record } = await oneRequest({ splitEvents: true }, 'completions', 4);
  assert.equal(record.ok, true);
  assert.equal(record.chunkTimesMs.length, 4);
  assert.equal(record.outputTokens, 4);
});

test('without usage, output tokens are the text chunks seen', async () => {
  const { record } = await oneRequest({ omitUsage: true }, 'chat', 3);
  assert.equal(record.ok, true);
  assert.equal(record.outputTokens, 3);
  assert.equal(record.promptTokens, null);
});

test('an HTTP error is classed by status with the OpenAI error message', async () => {
  const { record } = await oneRequest({ failWithStatus: 429 });
  assert.equal(record.ok, false);
  assert.equal(record.status, 429);
  assert.equal(record.errorKind, '429');
  assert.equal(record.errorMessage, 'refused with 429');
  assert.equal(record.ttftMs, null);
});

test('an error event inside the stream fails the request', async () => {
  const { record } = await oneRequest({ errorAfterTokens: 2 }, 'chat', 5);
  assert.equal(record.ok, false);
  assert.equal(record.errorKind, 'stream-error');
  assert.equal(record.errorMessage, 'engine failed');
  assert.equal(record.chunkTimesMs.length, 2);
});

test('a stream that ends without [DONE] is a protocol error', async () => {
  const { record } = await oneRequest({ omitDone: true });
  assert.equal(record.ok, false);
  assert.equal(record.errorKind, 'protocol');
});

test('a refused connection is a network error, not an exception', async () => {
  const server = await startTinyServer();
  const url = server.baseUrl;
  await server.close();
  const target = createTarget(url, 'm', null);
  const record = await sendStreamingRequest(target, 'chat', { messages: [] });
  closeTarget(target);
  assert.equal(record.ok, false);
  assert.equal(record.errorKind, 'network');
  assert.equal(record.status, null);
});

test('a server that goes silent fails the request with a timeout', async () => {
  const { record } = await oneRequest({ hangAfterHeaders: true }, 'chat', 5, 200);
  assert.equal(record.ok, false);
  assert.equal(record.status, 200);
  assert.equal(record.errorKind, 'timeout');
});

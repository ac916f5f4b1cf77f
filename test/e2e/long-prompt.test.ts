/**
 * Long prompts through the real server: prompts of at least tokenizerWorkerMinChars characters are
 * tokenized in the worker pool, shorter ones inline; both give the token counts the tokenizer gives
 * on the main thread, and a client that leaves while its prompt is tokenized leaves nothing behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startTestServer, type TestServer } from '../helpers/start-server.js';
import { testTokenizer } from '../helpers/tokenizer-fixture.js';
import { postJson, waitForIdle } from './fault-server.js';

const MIN_POOLED_CHARS = 1024;
let server: TestServer;

before(async () => {
  server = await startTestServer({ tokenizerWorkers: 1, tokenizerWorkerMinChars: MIN_POOLED_CHARS, fakeStepLatencyMs: 1 });
});

after(async () => {
  await server.stop();
});

const tok = testTokenizer();
const longText = 'Grüße 🙂 the quick brown fox jumps over the lazy dog; 日本語のテキスト. '.repeat(60);

test('a long completions prompt and a long chat message are served, with the inline token count', async () => {
  assert.ok(longText.length > MIN_POOLED_CHARS * 2);
  const completion = await postJson(`${server.url}/v1/completions`, { model: 'zamba2-fake', prompt: longText, max_tokens: 4 });
  assert.equal(completion.status, 200);
  const body = (await completion.json()) as { usage: { prompt_tokens: number }; choices: { finish_reason: string }[] };
  assert.equal(body.usage.prompt_tokens, tok.encode(longText, { addSpecialTokens: true }).length);
  assert.equal(body.choices[0]!.finish_reason, 'length');

  const chat = await postJson(`${server.url}/v1/chat/completions`, { model: 'zamba2-fake', messages: [{ role: 'user', content: longText }], max_tokens: 4, stream: true });
  assert.equal(chat.status, 200);
  const events = (await chat.text()).split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  const rendered = tok.renderChat([{ role: 'user', content: longText }]);
  const usageChat = await postJson(`${server.url}/v1/chat/completions`, { model: 'zamba2-fake', messages: [{ role: 'user', content: longText }], max_tokens: 2 });
  const usage = ((await usageChat.json()) as { usage: { prompt_tokens: number } }).usage;
  assert.equal(usage.prompt_tokens, tok.encode(rendered, { addSpecialTokens: true }).length);
});

test('short prompts (inline) and long ones (pooled) mixed concurrently all succeed', async () => {
  const requests = Array.from({ length: 12 }, (_, i) => {
    const prompt = i % 3 === 0 ? `${i} ${longText}` : `short prompt ${i}`;
    return postJson(`${server.url}/v1/completions`, { model: 'zamba2-fake', prompt, max_tokens: 3 }).then(async (r) => ({
      status: r.status,
      promptTokens: ((await r.json()) as { usage: { prompt_tokens: number } }).usage.prompt_tokens,
      expected: tok.encode(prompt, { addSpecialTokens: true }).length,
    }));
  });
  for (const r of await Promise.all(requests)) {
    assert.equal(r.status, 200);
    assert.equal(r.promptTokens, r.expected);
  }
  const multi = await postJson(`${server.url}/v1/completions`, { model: 'zamba2-fake', prompt: [longText, 'short', `${longText}!`], max_tokens: 2 });
  assert.equal(multi.status, 200);
  assert.equal(((await multi.json()) as { choices: unknown[] }).choices.length, 3);
});

test('errors after pooled tokenization keep their OpenAI status: a too-long prompt is 400 context_length_exceeded', async () => {
  const tooLong = 'word '.repeat(5000);
  const response = await postJson(`${server.url}/v1/completions`, { model: 'zamba2-fake', prompt: tooLong, max_tokens: 4 });
  assert.equal(response.status, 400);
  const body = (await response.json()) as { error: { code: string; type: string } };
  assert.deepEqual([body.error.type, body.error.code], ['invalid_request_error', 'context_length_exceeded']);
});

test('clients that leave while their long prompt is tokenized leave no sequence, slot or page behind', async () => {
  // Raw sockets (no keep-alive pool): each client sends its request and hangs up 0-9 ms later.
  const hangUps = Array.from({ length: 8 }, (_, i) => {
    const body = JSON.stringify({ model: 'zamba2-fake', prompt: `${i} ${longText}`, max_tokens: 200, stream: i % 2 === 0 });
    return new Promise<void>((resolve) => {
      const req = request(`${server.url}/v1/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.end(body, () => setTimeout(() => req.destroy(), i));
    });
  });
  await Promise.all(hangUps);
  await waitForIdle(server.scheduler);
  const stats = server.scheduler.stats();
  assert.deepEqual([stats.running, stats.waiting, stats.slotsUsed, stats.pagesUsed], [0, 0, 0, 0]);
  const later = await postJson(`${server.url}/v1/completions`, { model: 'zamba2-fake', prompt: longText, max_tokens: 2 });
  assert.equal(later.status, 200);
});

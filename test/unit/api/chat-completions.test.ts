import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_MODEL_ID, buildTestApp, parseSse } from '../../helpers/build-test-app.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const tok = testTokenizer();
const messages = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
];

test('non-streaming chat: OpenAI shape, usage, finish_reason length', async () => {
  const { app, scheduler } = buildTestApp();
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: TEST_MODEL_ID, messages, max_tokens: 3, temperature: 0 } });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.match(body.id, /^chatcmpl-/);
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.model, TEST_MODEL_ID);
  assert.equal(body.choices.length, 1);
  assert.deepEqual(body.choices[0].message, { role: 'assistant', content: ' word0 word1 word2'.slice(0, body.choices[0].message.content.length) });
  assert.equal(body.choices[0].finish_reason, 'length');
  assert.equal(body.choices[0].logprobs, null);
  const request = scheduler.records[0]!.request;
  const expectedPrompt = tok.encode(tok.renderChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]), { addSpecialTokens: true });
  assert.deepEqual([...request.promptTokens], expectedPrompt);
  assert.equal(request.maxTokens, 3);
  assert.equal(request.sampling.temperature, 0);
  assert.deepEqual(body.usage, { prompt_tokens: expectedPrompt.length, completion_tokens: 3, total_tokens: expectedPrompt.length + 3 });
});

test('max_tokens defaults to the rest of the context; too long is a 400 naming the limit', async () => {
  const { app, scheduler } = buildTestApp({ engine: { maxModelLen: 64 } });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages } });
  assert.equal(res.statusCode, 200, res.body);
  const promptLength = scheduler.records[0]!.request.promptTokens.length;
  assert.equal(scheduler.records[0]!.request.maxTokens, 64 - promptLength);
  const tooMuch = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages, max_completion_tokens: 64 } });
  assert.equal(tooMuch.statusCode, 400);
  assert.equal(tooMuch.json().error.code, 'context_length_exceeded');
  assert.equal(tooMuch.json().error.param, 'max_completion_tokens');
  assert.match(tooMuch.json().error.message, /maximum context length is 64 tokens/);
  const longPrompt = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: 'word '.repeat(100) }] } });
  assert.equal(longPrompt.statusCode, 400);
  assert.equal(longPrompt.json().error.code, 'context_length_exceeded');
});

test('a model without a chat template gets a clear 400', async () => {
  const { app } = buildTestApp({ chatTemplate: null });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages } });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'chat_template_missing');
  assert.match(res.json().error.message, /no chat template/);
  assert.equal((await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Hi' } })).statusCode, 200);
});

test('a template starting with bos_token gets no second BOS', async () => {
  const bosTemplate = "{{ bos_token }}{% for m in messages %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endfor %}";
  const { app, scheduler } = buildTestApp({ chatTemplate: bosTemplate });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 } });
  assert.equal(res.statusCode, 200, res.body);
  const prompt = [...scheduler.records[0]!.request.promptTokens];
  assert.equal(prompt[0], 1);
  assert.notEqual(prompt[1], 1);
});

test('streaming chat: role delta first, content deltas, finish chunk, usage chunk, [DONE]', async () => {
  const { app } = buildTestApp();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages, max_tokens: 4, stream: true, stream_options: { include_usage: true } },
  });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  const events = parseSse(res.body) as any[];
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1);
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id);
    assert.ok('usage' in c);
  }
  const usageChunk = chunks.at(-1);
  assert.deepEqual(usageChunk.choices, []);
  assert.equal(usageChunk.usage.completion_tokens, 4);
  const finish = chunks.at(-2);
  assert.equal(finish.choices[0].finish_reason, 'length');
  assert.deepEqual(finish.choices[0].delta, {});
  const text = chunks.slice(1, -2).map((c) => c.choices[0].delta.content).join('');
  assert.equal(text, ' word0 word1 word2 word3'.slice(0, text.length));
  assert.ok(text.length > 0);
  for (const c of chunks.slice(1, -2)) assert.equal(c.usage, null);
});

test('stop strings never leak, in streaming and non-streaming responses', async () => {
  const { app, scheduler } = buildTestApp();
  const payload = { messages, max_tokens: 8, stop: ['d2 w'] };
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload });
  assert.equal(res.json().choices[0].message.content, ' word0 word1 wor');
  assert.equal(res.json().choices[0].finish_reason, 'stop');
  assert.equal(res.json().choices[0].stop_reason, 'd2 w');
  assert.deepEqual([...scheduler.records[0]!.finishedEarly], [0]);
  const streamed = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { ...payload, stream: true } });
  const chunks = (parseSse(streamed.body) as any[]).slice(0, -1);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, ' word0 word1 wor');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
});

test('n > 1 gives n choices; logprobs come in the chat shape', async () => {
  const { app, scheduler } = buildTestApp();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages, max_tokens: 2, n: 3, logprobs: true, top_logprobs: 2, seed: 7, presence_penalty: 0.5, logit_bias: { '13': 5 } },
  });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.equal(body.choices.length, 3);
  assert.deepEqual(body.choices.map((c: any) => c.index), [0, 1, 2]);
  assert.equal(body.usage.completion_tokens, 6);
  const lp = body.choices[0].logprobs.content;
  assert.equal(lp.length, 2);
  assert.equal(typeof lp[0].token, 'string');
  assert.equal(lp[0].top_logprobs.length, 2);
  assert.ok(Array.isArray(lp[0].bytes));
  const sampling = scheduler.records[0]!.request.sampling;
  assert.equal(sampling.seed, 7);
  assert.equal(sampling.presencePenalty, 0.5);
  assert.equal(sampling.logprobs, 2);
  assert.deepEqual([...sampling.logitBias!], [[13, 5]]);
  assert.equal(scheduler.records[0]!.request.n, 3);
});

test('unsupported features are refused clearly', async () => {
  const { app } = buildTestApp();
  const tools = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages, tools: [{ type: 'function' }] } });
  assert.equal(tools.statusCode, 400);
  assert.equal(tools.json().error.code, 'unsupported_parameter');
  const json = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages, response_format: { type: 'json_object' } } });
  assert.equal(json.statusCode, 400);
});

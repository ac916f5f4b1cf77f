import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestApp, parseSse } from '../../helpers/build-test-app.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const tok = testTokenizer();

test('text prompt: BOS added, default max_tokens 16, OpenAI shape', async () => {
  const { app, scheduler } = buildTestApp({ script: { tokens: () => tok.encode('a' + ' x'.repeat(40), { addSpecialTokens: false }).slice(1) } });
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Once upon' } });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.match(body.id, /^cmpl-/);
  assert.equal(body.object, 'text_completion');
  assert.equal(body.choices[0].text, ' x'.repeat(16));
  assert.equal(body.choices[0].finish_reason, 'length');
  assert.equal(body.choices[0].logprobs, null);
  assert.deepEqual([...scheduler.records[0]!.request.promptTokens], tok.encode('Once upon', { addSpecialTokens: true }));
  assert.equal(body.usage.completion_tokens, 16);
});

test('prompt forms: list of strings, token ids, list of token-id lists; choice index = prompt × n + i', async () => {
  const { app, scheduler } = buildTestApp();
  const many = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: ['a', 'b'], n: 2, max_tokens: 2 } });
  assert.equal(many.statusCode, 200, many.body);
  assert.deepEqual(many.json().choices.map((c: any) => c.index), [0, 1, 2, 3]);
  assert.equal(scheduler.records.length, 2);
  const ids = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [1, 22557], max_tokens: 1 } });
  assert.equal(ids.statusCode, 200);
  assert.deepEqual([...scheduler.records[2]!.request.promptTokens], [1, 22557]);
  const idLists = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [[1, 22557], [1, 1526]], max_tokens: 1 } });
  assert.equal(idLists.json().choices.length, 2);
  const badId = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [1, 99999] } });
  assert.equal(badId.statusCode, 400);
  assert.equal(badId.json().error.param, 'prompt');
  const empty = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [] } });
  assert.equal(empty.statusCode, 400);
});

test('echo + logprobs + max_tokens 0 scores the prompt (lm-eval-harness loglikelihood)', async () => {
  const { app } = buildTestApp();
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'The cat sat', echo: true, logprobs: 1, max_tokens: 0 } });
  assert.equal(res.statusCode, 200, res.body);
  const choice = res.json().choices[0];
  assert.equal(choice.text, 'The cat sat');
  const promptIds = tok.encode('The cat sat', { addSpecialTokens: true });
  assert.equal(choice.logprobs.tokens.length, promptIds.length);
  assert.equal(choice.logprobs.token_logprobs[0], null);
  assert.equal(choice.logprobs.top_logprobs[0], null);
  for (const lp of choice.logprobs.token_logprobs.slice(1)) assert.equal(typeof lp, 'number');
  assert.equal(choice.logprobs.text_offset.length, promptIds.length);
  assert.equal(choice.finish_reason, 'length');
  assert.equal(res.json().usage.completion_tokens, 0);
});

test('echo without logprobs prefixes the prompt; logprobs without echo cover output only', async () => {
  const { app } = buildTestApp();
  const echo = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Say', echo: true, max_tokens: 4 } }); // " word0" is two tokens
  assert.equal(echo.json().choices[0].text, 'Say word0 word1');
  const lp = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Say', logprobs: 2, max_tokens: 2 } });
  const logprobs = lp.json().choices[0].logprobs;
  assert.equal(logprobs.tokens.join(''), ' word0');
  assert.equal(logprobs.tokens.length, logprobs.token_logprobs.length);
  assert.ok(Object.keys(logprobs.top_logprobs[0]).length >= 1);
  assert.equal(logprobs.text_offset[0], 0);
});

test('streaming completions: chunks, finish, usage, [DONE]; echo arrives first', async () => {
  const { app } = buildTestApp();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/completions',
    payload: { prompt: 'Say', echo: true, max_tokens: 6, stream: true, stream_options: { include_usage: true } },
  });
  const events = parseSse(res.body) as any[];
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1);
  assert.equal(chunks[0].object, 'text_completion');
  assert.ok(chunks[0].choices[0].text.startsWith('Say'));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), 'Say word0 word1 word2');
  assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
  assert.equal(chunks.at(-1).usage.completion_tokens, 6);
});

test('suffix and best_of > n are refused clearly', async () => {
  const { app } = buildTestApp();
  const suffix = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'a', suffix: 'b' } });
  assert.equal(suffix.statusCode, 400);
  assert.equal(suffix.json().error.param, 'suffix');
  assert.equal(suffix.json().error.code, 'unsupported_parameter');
  const bestOf = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'a', best_of: 3 } });
  assert.equal(bestOf.statusCode, 400);
});

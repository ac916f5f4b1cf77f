import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SchedulerRejection } from '../../../src/scheduler/types.js';
import { TEST_MODEL_ID, buildTestApp } from '../../helpers/build-test-app.js';

const chatBody = { model: TEST_MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };

test('health, ready, version', async () => {
  const { app, readiness } = buildTestApp();
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  const ready = await app.inject({ method: 'GET', url: '/ready' });
  assert.equal(ready.statusCode, 200);
  readiness.ready = false;
  const notReady = await app.inject({ method: 'GET', url: '/ready' });
  assert.equal(notReady.statusCode, 503);
  assert.equal(notReady.json().error.code, 'not_ready');
  assert.match((await app.inject({ method: 'GET', url: '/version' })).json().version, /^\d+\.\d+\.\d+/);
});

test('GET /v1/models lists the served model with owned_by and max_model_len', async () => {
  const { app } = buildTestApp({ config: { maxModelLen: 128 } });
  const res = await app.inject({ method: 'GET', url: '/v1/models' });
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.object, 'list');
  assert.equal(body.data.length, 1);
  assert.equal(body.data[0].id, TEST_MODEL_ID);
  assert.equal(body.data[0].object, 'model');
  assert.equal(body.data[0].owned_by, 'zamba2-serve');
  assert.equal(body.data[0].max_model_len, 128);
  assert.equal((await app.inject({ method: 'GET', url: `/v1/models/${TEST_MODEL_ID}` })).json().id, TEST_MODEL_ID);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models/other' })).statusCode, 404);
});

test('unknown route and unknown model are 404 with an OpenAI error body', async () => {
  const { app } = buildTestApp();
  const route = await app.inject({ method: 'GET', url: '/v1/nope' });
  assert.equal(route.statusCode, 404);
  assert.deepEqual(Object.keys(route.json().error).sort(), ['code', 'message', 'param', 'type']);
  const model = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { ...chatBody, model: 'gpt-4' } });
  assert.equal(model.statusCode, 404);
  assert.equal(model.json().error.code, 'model_not_found');
  assert.equal(model.json().error.param, 'model');
});

test('invalid fields are 400 naming the field; bad JSON is 400', async () => {
  const { app } = buildTestApp();
  const cases: [unknown, string][] = [
    [{ ...chatBody, temperature: 5 }, 'temperature'],
    [{ ...chatBody, messages: [] }, 'messages'],
    [{ ...chatBody, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0]'],
    [{ ...chatBody, messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ ...chatBody, n: 0 }, 'n'],
    [{ ...chatBody, top_logprobs: 3 }, 'top_logprobs'],
    [{ ...chatBody, stream_options: { include_usage: true } }, 'stream_options'],
    [{ ...chatBody, logit_bias: { abc: 1 } }, 'logit_bias'],
  ];
  for (const [payload, param] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: payload as object });
    assert.equal(res.statusCode, 400, `${param}: ${res.body}`);
    assert.equal(res.json().error.param, param, res.body);
    assert.equal(res.json().error.type, 'invalid_request_error');
    assert.ok(res.json().error.message.includes(param), res.body);
  }
  const bad = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: '{"model":' });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'invalid_json');
  const notObject = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: '[1,2]' });
  assert.equal(notObject.statusCode, 400);
});

test('a body without Content-Type is still read as JSON (curl -d)', async () => {
  const { app } = buildTestApp();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: JSON.stringify(chatBody),
  });
  assert.equal(res.statusCode, 200, res.body);
});

test('413 for a body over the limit', async () => {
  const { app } = buildTestApp({ config: { bodyLimitBytes: 1000 } });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { ...chatBody, messages: [{ role: 'user', content: 'x'.repeat(2000) }] },
  });
  assert.equal(res.statusCode, 413);
  assert.equal(res.json().error.code, 'request_too_large');
});

test('API keys: 401 without or with a wrong key, 200 with any configured key; health stays open', async () => {
  const { app } = buildTestApp({ config: { apiKey: ['k1', 'second-key'] } });
  const none = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody });
  assert.equal(none.statusCode, 401);
  assert.equal(none.json().error.code, 'invalid_api_key');
  const wrong = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer k2' } });
  assert.equal(wrong.statusCode, 401);
  const ok = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer second-key' } });
  assert.equal(ok.statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
});

test('overload is 429 with Retry-After; shutting down is 503', async () => {
  let reason: 'overloaded' | 'shutting_down' = 'overloaded';
  const { app } = buildTestApp({ script: { reject: () => new SchedulerRejection('waiting queue is full', reason, 2) } });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody });
  assert.equal(res.statusCode, 429);
  assert.equal(res.headers['retry-after'], '2');
  assert.equal(res.json().error.code, 'server_overloaded');
  reason = 'shutting_down';
  const down = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x' } });
  assert.equal(down.statusCode, 503);
});

test('an engine failure is a 500 without internals', async () => {
  const { app } = buildTestApp({ script: { failAfterTokens: 1 } });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody });
  assert.equal(res.statusCode, 500);
  assert.equal(res.json().error.type, 'server_error');
  assert.ok(!res.body.includes('secret detail'));
  assert.ok(!res.body.includes('at '), 'no stack trace');
});

test('/metrics exposes request, token and latency metrics', async () => {
  const { app } = buildTestApp();
  await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody });
  await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { ...chatBody, temperature: 9 } });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  const text = res.body;
  assert.match(text, /zamba2_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} 1/);
  assert.match(text, /zamba2_http_requests_total\{route="\/v1\/chat\/completions",status="400"\} 1/);
  assert.match(text, /zamba2_generation_tokens_total 4/);
  assert.match(text, /zamba2_time_to_first_token_seconds_count 1/);
  assert.match(text, /zamba2_time_per_output_token_seconds_count 1/);
  assert.match(text, /zamba2_e2e_request_latency_seconds_count 1/);
  assert.match(text, /zamba2_num_requests_running \d+/);
  assert.match(text, /zamba2_num_requests_waiting 0/);
  assert.match(text, /zamba2_prompt_tokens_total [1-9]/);
});

test('a streamed request is counted once, with its status', async () => {
  const { app } = buildTestApp();
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 2, stream: true } });
  assert.equal(res.statusCode, 200);
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(text, /zamba2_http_requests_total\{route="\/v1\/completions",status="200"\} 1\n/);
});

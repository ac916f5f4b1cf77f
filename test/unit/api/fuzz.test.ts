/**
 * Fuzzes the request schemas through app.inject: random bodies, and valid requests with random
 * field values. The server must answer every one with a 2xx or a 4xx OpenAI error body: no 500,
 * no crash, no hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildTestApp } from '../../helpers/build-test-app.js';

const anyValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 40000 }),
  fc.double({ noNaN: false }),
  fc.string({ maxLength: 12 }),
  fc.array(fc.oneof(fc.integer({ min: -3, max: 40000 }), fc.string({ maxLength: 6 })), { maxLength: 5 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 6 })), { maxKeys: 3 }),
);

const chatFields = [
  'model', 'messages', 'temperature', 'top_p', 'top_k', 'min_p', 'max_tokens', 'max_completion_tokens', 'n', 'stop',
  'seed', 'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'logprobs', 'top_logprobs', 'logit_bias',
  'user', 'stream', 'stream_options', 'min_tokens', 'ignore_eos', 'stop_token_ids', 'skip_special_tokens',
  'include_stop_str_in_output', 'tools', 'response_format', 'add_generation_prompt',
];
const completionFields = [...chatFields.filter((f) => f !== 'messages'), 'prompt', 'echo', 'suffix', 'best_of'];

const message = fc.record(
  {
    role: fc.oneof(fc.constantFrom('system', 'user', 'assistant', 'developer', 'tool'), fc.string({ maxLength: 5 })),
    content: fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constant(null),
      fc.array(fc.record({ type: fc.constantFrom('text', 'image_url'), text: fc.string({ maxLength: 10 }) }), { maxLength: 3 }),
      anyValue,
    ),
  },
  { requiredKeys: [] },
);

function overrides(fields: string[]) {
  return fc.dictionary(fc.constantFrom(...fields), anyValue, { maxKeys: 4 });
}

const chatBodies = fc.oneof(
  fc.record({ messages: fc.array(message, { maxLength: 4 }), max_tokens: fc.integer({ min: -1, max: 8 }) }).chain((base) =>
    overrides(chatFields).map((o) => ({ ...base, ...o })),
  ),
  fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 5 }),
  anyValue,
);

const completionBodies = fc.oneof(
  fc
    .record({
      prompt: fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
        fc.array(fc.integer({ min: -2, max: 33000 }), { maxLength: 6 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 33000 }), { maxLength: 4 }), { maxLength: 3 }),
      ),
      max_tokens: fc.integer({ min: -1, max: 6 }),
    })
    .chain((base) => overrides(completionFields).map((o) => ({ ...base, ...o }))),
  fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 5 }),
);

function checkResponse(status: number, body: string, contentType: string | undefined): void {
  assert.ok(status < 500, `status ${status}: ${body}`);
  if (status >= 400) {
    const parsed = JSON.parse(body) as { error: { message: string; type: string; code: string } };
    assert.equal(typeof parsed.error.message, 'string');
    assert.equal(typeof parsed.error.type, 'string');
  } else if (contentType?.startsWith('text/event-stream')) {
    assert.ok(body.endsWith('data: [DONE]\n\n'), body);
    assert.ok(!body.includes('"server_error"'), body);
  }
}

test('fuzz /v1/chat/completions: never a 500', async () => {
  const { app } = buildTestApp({ engine: { maxModelLen: 128 } });
  await fc.assert(
    fc.asyncProperty(chatBodies, async (body) => {
      const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
      checkResponse(res.statusCode, res.body, res.headers['content-type'] as string | undefined);
    }),
    { numRuns: 400 },
  );
});

test('fuzz /v1/completions: never a 500', async () => {
  const { app } = buildTestApp({ engine: { maxModelLen: 128 } });
  await fc.assert(
    fc.asyncProperty(completionBodies, async (body) => {
      const res = await app.inject({ method: 'POST', url: '/v1/completions', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
      checkResponse(res.statusCode, res.body, res.headers['content-type'] as string | undefined);
    }),
    { numRuns: 400 },
  );
});

test('fuzz raw bodies and content types: never a 500', async () => {
  const { app } = buildTestApp();
  await fc.assert(
    fc.asyncProperty(
      fc.string({ maxLength: 40 }),
      fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream'),
      fc.constantFrom('/v1/chat/completions', '/v1/completions', '/v1/models'),
      async (payload, contentType, url) => {
        const res = await app.inject({ method: 'POST', url, headers: { 'content-type': contentType }, payload });
        checkResponse(res.statusCode, res.body, res.headers['content-type'] as string | undefined);
      },
    ),
    { numRuns: 300 },
  );
});

/**
 * Long prompts are tokenized in the worker pool; its failures keep the OpenAI error shapes: a
 * worker that cannot tokenize is a 500 internal_error (as an inline tokenizer exception was), a
 * chat template error stays 400, and a too-long prompt stays 400 context_length_exceeded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config/load-config.js';
import type { TextTokenizer } from '../../../src/tokenizer/index.js';
import { testEngineDescription, wordsScript } from '../../helpers/build-test-app.js';
import { ScriptedScheduler } from '../../helpers/scripted-scheduler.js';
import { BOS_TEMPLATE, testTokenizer } from '../../helpers/tokenizer-fixture.js';

function appWith(tokenizer: TextTokenizer) {
  const config = { ...loadConfig(), device: 'fake' as const, logLevel: 'silent' as const, tokenizerWorkers: 1, tokenizerWorkerMinChars: 64 };
  return buildApp({ config, scheduler: new ScriptedScheduler({ tokens: wordsScript() }), tokenizer, engineDescription: testEngineDescription({ maxModelLen: 4096 }) });
}

test('a worker that cannot tokenize answers 500 internal_error without details; short prompts still work inline', async () => {
  const good = testTokenizer();
  // Same tokenizer on the main thread, but files a worker cannot build a tokenizer from.
  const broken: TextTokenizer = Object.create(good, { encoderSource: { value: { tokenizerJson: { model: { type: 'NoSuchModel' } }, tokenizerConfig: {} } } });
  const app = appWith(broken);
  try {
    const long = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'long prompt text '.repeat(10), max_tokens: 2 } });
    assert.equal(long.statusCode, 500);
    assert.deepEqual(long.json(), { error: { message: 'internal server error', type: 'server_error', param: null, code: 'internal_error' } });
    const short = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'short', max_tokens: 2 } });
    assert.equal(short.statusCode, 200);
  } finally {
    await app.close();
  }
});

test('pooled prompts keep their 400s: chat template errors and context length', async () => {
  const app = appWith(testTokenizer(BOS_TEMPLATE));
  try {
    const badRoles = await app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { messages: [{ role: 'system', content: 'x'.repeat(200) }], max_tokens: 2 },
    });
    assert.equal(badRoles.statusCode, 400);
    assert.equal(badRoles.json().error.code, 'chat_template_error');
    const tooLong = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'word '.repeat(5000), max_tokens: 2 } });
    assert.equal(tooLong.statusCode, 400);
    assert.equal(tooLong.json().error.code, 'context_length_exceeded');
    const ok = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: 'y '.repeat(200) }], max_tokens: 2 } });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().usage.prompt_tokens, testTokenizer(BOS_TEMPLATE).encode(testTokenizer(BOS_TEMPLATE).renderChat([{ role: 'user', content: 'y '.repeat(200) }]), { addSpecialTokens: false }).length);
  } finally {
    await app.close();
  }
});

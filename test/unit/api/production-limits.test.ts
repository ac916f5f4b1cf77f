/**
 * The operator-facing limits of the HTTP surface (app.inject): no prompt or completion text in the
 * logs unless logRequests, CORS off unless origins are configured, 413 over the body limit, 400
 * naming the context length for a prompt that does not fit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config/load-config.js';
import type { ServerConfig } from '../../../src/config/schema.js';
import { buildTestApp, testEngineDescription, wordsScript } from '../../helpers/build-test-app.js';
import { ScriptedScheduler } from '../../helpers/scripted-scheduler.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const SECRET_PROMPT = 'my-secret-prompt-7f3a';

/** An app whose pino logger (level info) writes into the returned array of lines. */
function appWithLogs(config: Partial<ServerConfig>) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  const app = buildApp({
    config: { ...loadConfig(), device: 'fake', ...config },
    scheduler: new ScriptedScheduler({ tokens: wordsScript() }),
    tokenizer: testTokenizer(),
    engineDescription: testEngineDescription(),
    logger: pino({ level: 'info' }, sink),
  });
  return { app, lines };
}

async function exercise(app: ReturnType<typeof appWithLogs>['app']) {
  const chat = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: SECRET_PROMPT }], max_tokens: 4 } });
  assert.equal(chat.statusCode, 200);
  const completion = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: SECRET_PROMPT, max_tokens: 4 } });
  assert.equal(completion.statusCode, 200);
  const bad = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: SECRET_PROMPT, max_tokens: 'many' } });
  assert.equal(bad.statusCode, 400);
  return (chat.json() as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
}

test('logs hold no prompt or completion text by default, and do with logRequests', async () => {
  const quiet = appWithLogs({ logRequests: false });
  const completionText = await exercise(quiet.app);
  assert.ok(completionText.includes('word1'));
  assert.ok(quiet.lines.length > 0, 'the app logged something (errors, at least)');
  const quietLog = quiet.lines.join('\n');
  assert.ok(!quietLog.includes(SECRET_PROMPT), 'prompt text in the default log');
  assert.ok(!quietLog.includes('word1'), 'completion text in the default log');

  const loud = appWithLogs({ logRequests: true });
  await exercise(loud.app);
  const loudLog = loud.lines.join('\n');
  assert.ok(loudLog.includes(SECRET_PROMPT), 'prompt logged with logRequests');
  assert.ok(loudLog.includes('word1'), 'completion logged with logRequests');
});

test('CORS is off by default and answers only the configured origins when on', async () => {
  const off = buildTestApp().app;
  const plain = await off.inject({ method: 'GET', url: '/v1/models', headers: { origin: 'https://evil.example' } });
  assert.equal(plain.headers['access-control-allow-origin'], undefined);
  const preflight = await off.inject({ method: 'OPTIONS', url: '/v1/chat/completions', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  assert.equal(preflight.headers['access-control-allow-origin'], undefined);

  const on = buildTestApp({ config: { corsOrigins: ['https://app.example'] } }).app;
  const allowed = await on.inject({ method: 'GET', url: '/v1/models', headers: { origin: 'https://app.example' } });
  assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example');
  const other = await on.inject({ method: 'GET', url: '/v1/models', headers: { origin: 'https://evil.example' } });
  assert.notEqual(other.headers['access-control-allow-origin'], 'https://evil.example');
});

test('413 over the body limit; 400 naming the context length for a prompt that does not fit', async () => {
  const { app } = buildTestApp({ config: { bodyLimitBytes: 1024 }, engine: { maxModelLen: 64 } });
  const big = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(2000), max_tokens: 1 } });
  assert.equal(big.statusCode, 413);
  assert.equal(big.json().error.code, 'request_too_large');
  const long = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: Array.from({ length: 80 }, (_, i) => 100 + i), max_tokens: 1 } });
  assert.equal(long.statusCode, 400);
  assert.equal(long.json().error.code, 'context_length_exceeded');
  assert.match(long.json().error.message, /maximum context length is 64 tokens/);
});

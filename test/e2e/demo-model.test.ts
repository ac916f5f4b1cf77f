/**
 * What `npm start` serves: the bundled demo model (models/) on the CPU engine, through the real
 * server and the official openai client. Greedy output must be the same streamed or not, and a
 * stop string must cut it without leaking.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load-config.js';

let server: RunningServer;
let client: OpenAI;

before(async () => {
  // The defaults of `npm start` (model ./models, device cpu), with a small cache so start-up is quick.
  server = await startServer(
    { ...loadConfig(), host: '127.0.0.1', port: 0, maxNumSeqs: 4, cacheFraction: 0.01, logLevel: 'silent' },
    { logger: pino({ level: 'silent' }) },
  );
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });
});

after(async () => {
  await server.close();
});

test('serves the bundled demo model on the CPU', async () => {
  const models = await client.models.list();
  assert.equal(models.data[0]!.id, 'zamba2-demo');
  const description = server.engine.describe();
  assert.equal(description.kind, 'cpu');
});

test('greedy chat: the same text streamed and not streamed', async () => {
  const params = { model: 'zamba2-demo', messages: [{ role: 'user' as const, content: 'How do I sort a list?' }], max_tokens: 24, temperature: 0 };
  const whole = await client.chat.completions.create(params);
  const text = whole.choices[0]!.message.content!;
  assert.ok(text.length > 0);
  assert.equal(whole.usage!.completion_tokens, 24);
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
  assert.equal(streamed, text);
});

test('a stop string taken from the greedy output cuts it there', async () => {
  const params = { model: 'zamba2-demo', prompt: 'def main(', max_tokens: 24, temperature: 0 };
  const full = (await client.completions.create(params)).choices[0]!.text;
  // A stop string that starts in the middle of the output (likely spanning tokens).
  const at = Math.floor(full.length / 2);
  const stop = full.slice(at, at + 3);
  assert.equal(stop.length, 3);
  const cut = await client.completions.create({ ...params, stop: [stop] });
  assert.equal(cut.choices[0]!.text, full.slice(0, full.indexOf(stop)));
  assert.equal(cut.choices[0]!.finish_reason, 'stop');
});

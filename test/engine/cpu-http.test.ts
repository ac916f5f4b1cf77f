// The real server on the CPU engine with the bundled demo model (models/): prompt logprobs through
// /v1/completions (echo + logprobs) against the demo golden fixture, and a chat completion.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load-config.js';
import { logSoftmax } from '../../src/engine/cpu/sampler.js';
import { loadGoldenFixture } from '../helpers/golden.js';

let server: RunningServer;
const post = async (path: string, body: unknown): Promise<any> => {
  const res = await fetch(server.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
};

before(async () => {
  const fx = loadGoldenFixture('demo');
  server = await startServer(
    { ...loadConfig(), device: 'cpu', host: '127.0.0.1', port: 0, logLevel: 'silent', model: fx.checkpointDir, servedModelName: 'demo', maxNumSeqs: 8 },
    { logger: pino({ level: 'silent' }) },
  );
});

after(async () => {
  await server?.close();
});

test('echo + logprobs returns the golden prompt logprobs', async () => {
  const fx = loadGoldenFixture('demo');
  const V = fx.vocabSize;
  for (const c of fx.cases) {
    // prompt = the golden prompt cut after a stored logits row + the next token: its echoed logprob
    // is log-softmax(golden row)[next token]
    const pos = c.logitPositions[0]!;
    const next = pos + 1 < c.promptTokens.length ? c.promptTokens[pos + 1]! : c.greedyTokens[0]!;
    const prompt = [...c.promptTokens.slice(0, pos + 1), next];
    const body = await post('/v1/completions', { model: 'demo', prompt, max_tokens: 1, echo: true, logprobs: 1, temperature: 0 });
    const lp = body.choices[0].logprobs;
    assert.equal(lp.token_logprobs.length, prompt.length + 1, c.name);
    const want = logSoftmax(c.logits.subarray(0, V))[next]!;
    const got = lp.token_logprobs[prompt.length - 1] as number;
    assert.ok(Math.abs(got - want) <= 1e-3 * Math.max(1, Math.abs(want)), `${c.name}: echoed logprob ${got}, golden ${want}`);
  }
});

test('a chat completion on the demo model returns text', async () => {
  const body = await post('/v1/chat/completions', {
    model: 'demo',
    messages: [{ role: 'user', content: 'Write a Python function that reverses a list.' }],
    max_tokens: 24,
    temperature: 0,
  });
  const choice = body.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.ok(choice.message.content.trim().length > 0);
  assert.ok(['stop', 'length'].includes(choice.finish_reason));
  assert.ok(body.usage.completion_tokens > 0 && body.usage.completion_tokens <= 24);
});

/**
 * End to end: the real server (fake engine, real scheduler, real tokenizer) on a free port, driven
 * by the official `openai` npm client.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { FakeEngine } from '../../src/engine/fake/fake-engine.js';
import { startTestServer, type TestServer } from '../helpers/start-server.js';

let server: TestServer;
let client: OpenAI;

before(async () => {
  server = await startTestServer({ fakeStepLatencyMs: 2, apiKey: ['test-key'] });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test-key', maxRetries: 0 });
});

after(async () => {
  await server.stop();
});

test('lists the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((m) => m.id),
    ['zamba2-fake'],
  );
});

test('completes a prompt, deterministically for the same seed', async () => {
  const a = await client.completions.create({ model: 'zamba2-fake', prompt: 'Once upon a time', max_tokens: 12, temperature: 0.8, seed: 42 });
  const b = await client.completions.create({ model: 'zamba2-fake', prompt: 'Once upon a time', max_tokens: 12, temperature: 0.8, seed: 42 });
  assert.equal(a.object, 'text_completion');
  assert.ok(a.choices[0]!.text.length > 0);
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
  assert.ok(['length', 'stop'].includes(a.choices[0]!.finish_reason));
  assert.ok(a.usage!.completion_tokens <= 12 && a.usage!.completion_tokens > 0);
});

test('chats, with n > 1', async () => {
  const res = await client.chat.completions.create({
    model: 'zamba2-fake',
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hello!' },
    ],
    max_tokens: 10,
    n: 2,
  });
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.choices.length, 2);
  for (const c of res.choices) {
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
  }
  assert.ok(res.usage!.prompt_tokens > 5);
});

test('streams a chat answer with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'zamba2-fake',
    messages: [{ role: 'user', content: 'Tell me a story' }],
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let role: string | undefined;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice) {
      role ??= choice.delta.role;
      text += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(role, 'assistant');
  assert.ok(text.length > 0);
  assert.ok(finish === 'length' || finish === 'stop');
  assert.ok(usage && usage.completion_tokens > 0 && usage.completion_tokens <= 16);
  assert.ok(!text.includes('\uFFFD'));
});

test('streams a completion; the non-streamed text is the same', async () => {
  const params = { model: 'zamba2-fake', prompt: 'The quick brown fox', max_tokens: 20, temperature: 0 } as const;
  const stream = await client.completions.create({ ...params, stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
  const whole = await client.completions.create(params);
  assert.equal(streamed, whole.choices[0]!.text);
});

test('a client that cancels mid-stream frees its sequence at once', async () => {
  const engine = server.engine as FakeEngine;
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    {
      model: 'zamba2-fake',
      messages: [{ role: 'user', content: 'Count to a million' }],
      max_tokens: 2000,
      stream: true,
      // vLLM extension: keep going past eos, so only the cancel can end it early.
      ...({ ignore_eos: true } as object),
    },
    { signal: controller.signal },
  );
  const stepsBefore = engine.stepsRun;
  let chunks = 0;
  try {
    for await (const _chunk of stream) {
      if (++chunks === 3) controller.abort();
    }
  } catch (err) {
    // The client may end the iteration quietly or with an abort error; both are a cancel.
    assert.ok(err instanceof Error && /abort/i.test(`${err.name} ${err.message}`), String(err));
  }
  assert.equal(chunks, 3);
  // Wait for the scheduler to drop the sequence; it must not run the remaining ~2000 steps.
  while (server.scheduler.stats().running > 0) await new Promise((r) => setTimeout(r, 5));
  assert.ok(engine.stepsRun - stepsBefore < 1000, `ran ${engine.stepsRun - stepsBefore} steps after cancel`);
  assert.equal(server.scheduler.liveSequenceMemory, 0);
});

test('a non-streaming request whose client hangs up is cancelled too', async () => {
  const engine = server.engine as FakeEngine;
  const controller = new AbortController();
  const stepsBefore = engine.stepsRun;
  const pending = fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer test-key' },
    body: JSON.stringify({ prompt: 'Go on forever', max_tokens: 2000, ignore_eos: true }),
    signal: controller.signal,
  });
  // Hang up once the sequence is running.
  while (server.scheduler.stats().running === 0) await new Promise((r) => setTimeout(r, 2));
  controller.abort();
  await assert.rejects(pending);
  while (server.scheduler.stats().running > 0) await new Promise((r) => setTimeout(r, 5));
  assert.ok(engine.stepsRun - stepsBefore < 1000, `ran ${engine.stepsRun - stepsBefore} steps`);
  assert.equal(server.scheduler.liveSequenceMemory, 0);
});

test('a wrong API key is refused with 401', async () => {
  const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (err: unknown) => err instanceof OpenAI.AuthenticationError);
});

test('errors reach the client as OpenAI errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'other-model', messages: [{ role: 'user', content: 'x' }] }),
    (err: unknown) => err instanceof OpenAI.NotFoundError,
  );
  await assert.rejects(
    client.completions.create({ model: 'zamba2-fake', prompt: 'x', max_tokens: 100000 }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && /maximum context length/.test(err.message),
  );
});

test('/metrics reflects the traffic, step telemetry from the scheduler included', async () => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 'NaN');
  assert.ok(value('zamba2_step_duration_seconds_count') > 0);
  assert.ok(value('zamba2_time_to_first_token_seconds_count') > 0);
  assert.ok(value('zamba2_generation_tokens_total') > 0);
  assert.ok(value('zamba2_prompt_tokens_total') > 0);
  assert.match(text, /zamba2_step_tokens_total\{kind="prefill"\} \d+/);
  assert.match(text, /zamba2_http_requests_total\{route="\/v1\/models",status="401"\} 1/);
});

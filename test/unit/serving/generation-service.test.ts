import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GREEDY } from '../../../src/engine/engine.js';
import { SchedulerRejection } from '../../../src/scheduler/types.js';
import { GenerationService, ServingError, type GenerateParams, type ServingEvent } from '../../../src/serving/index.js';
import { ScriptedScheduler } from '../../helpers/scripted-scheduler.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const tok = testTokenizer();
/** Completion ids of `text` (which starts with a space) as a model would emit them after a word. */
const ids = (text: string): number[] => tok.encode(`a${text}`, { addSpecialTokens: false }).slice(1);

function params(overrides: Partial<GenerateParams> = {}): GenerateParams {
  return {
    requestId: 'r1',
    promptTokens: tok.encode('Say', { addSpecialTokens: true }),
    maxTokens: 50,
    minTokens: 0,
    n: 1,
    sampling: GREEDY,
    stop: [],
    stopTokenIds: [],
    ignoreEos: false,
    includeStopStrInOutput: false,
    skipSpecialTokens: true,
    logprobs: null,
    promptLogprobs: null,
    ...overrides,
  };
}

async function collect(stream: AsyncIterable<ServingEvent>): Promise<ServingEvent[]> {
  const out: ServingEvent[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

const textOf = (events: ServingEvent[], index = 0): string =>
  events.filter((e) => e.kind === 'delta' && e.index === index).map((e) => (e.kind === 'delta' ? e.text : '')).join('');

test('streams text, ends on eos without showing it, counts eos as a completion token', async () => {
  const scheduler = new ScriptedScheduler({ tokens: () => [...ids(' Hello world'), 2, ...ids(' never')] });
  const done: unknown[] = [];
  const service = new GenerationService({ scheduler, tokenizer: tok, observer: { onRequestDone: (i) => done.push(i) } });
  const events = await collect(service.start(params()));
  assert.equal(textOf(events), ' Hello world');
  const fin = events.at(-1);
  assert.deepEqual(fin, { kind: 'finished', index: 0, finishReason: 'stop', stopReason: null, completionTokens: 3 });
  assert.equal(done.length, 1);
  assert.equal((done[0] as { outcome: string }).outcome, 'finished');
});

test('a stop string split across tokens never leaks and finishes the sequence at the scheduler', async () => {
  const scheduler = new ScriptedScheduler({ tokens: () => ids(' Sure thing.\nUser: next question and more text') });
  const service = new GenerationService({ scheduler, tokenizer: tok });
  const events = await collect(service.start(params({ stop: ['\nUser:'] })));
  assert.equal(textOf(events), ' Sure thing.');
  const fin = events.at(-1)!;
  assert.equal(fin.kind, 'finished');
  assert.equal(fin.kind === 'finished' && fin.stopReason, '\nUser:');
  assert.equal(fin.kind === 'finished' && fin.finishReason, 'stop');
  assert.deepEqual([...scheduler.records[0]!.finishedEarly], [0]);
  assert.equal(scheduler.records[0]!.aborted, false);
  for (const e of events) if (e.kind === 'delta') assert.ok(!e.text.includes('User'));
});

test('length finish, n > 1 with independent texts, stop token ids reported as stop_reason', async () => {
  const scheduler = new ScriptedScheduler({ tokens: (_r, i) => (i === 0 ? ids(' a b c d e f') : [...ids(' x y'), 999, ...ids(' z')]) });
  const service = new GenerationService({ scheduler, tokenizer: tok });
  const events = await collect(service.start(params({ n: 2, maxTokens: 4, stopTokenIds: [999] })));
  assert.equal(textOf(events, 0), ' a b c d');
  assert.equal(textOf(events, 1), ' x y');
  const fins = events.filter((e) => e.kind === 'finished');
  assert.deepEqual(
    fins.map((e) => e.kind === 'finished' && [e.index, e.finishReason, e.stopReason]),
    [
      [1, 'stop', 999],
      [0, 'length', null],
    ],
  );
  assert.deepEqual([...scheduler.records[0]!.request.stopTokenIds!], [999]);
});

test('max_tokens 0 with prompt logprobs: prompt scored, no output text', async () => {
  const scheduler = new ScriptedScheduler({ tokens: () => ids(' anything') });
  const service = new GenerationService({ scheduler, tokenizer: tok });
  const prompt = tok.encode('The cat sat', { addSpecialTokens: true });
  const events = await collect(service.start(params({ promptTokens: prompt, maxTokens: 0, promptLogprobs: 1 })));
  const pl = events[0]!;
  assert.equal(pl.kind, 'prompt-logprobs');
  assert.equal(pl.kind === 'prompt-logprobs' && pl.entries.length, prompt.length);
  assert.equal(pl.kind === 'prompt-logprobs' && pl.entries[0], null);
  assert.equal(pl.kind === 'prompt-logprobs' && pl.entries[1]!.tokenId, prompt[1]);
  assert.equal(textOf(events), '');
  assert.deepEqual(events.at(-1), { kind: 'finished', index: 0, finishReason: 'length', stopReason: null, completionTokens: 0 });
  assert.equal(scheduler.records[0]!.request.maxTokens, 1);
});

test('logprobs travel with the delta that releases their text', async () => {
  const scheduler = new ScriptedScheduler({ tokens: () => ids(' ₿ ok') });
  const service = new GenerationService({ scheduler, tokenizer: tok });
  const events = await collect(service.start(params({ logprobs: 2, sampling: { ...GREEDY, logprobs: 2 } })));
  const deltas = events.filter((e) => e.kind === 'delta');
  const allTokens = deltas.flatMap((e) => (e.kind === 'delta' ? e.tokenIds : []));
  assert.deepEqual(allTokens, ids(' ₿ ok'));
  for (const d of deltas) if (d.kind === 'delta') assert.equal(d.logprobs!.length, d.tokenIds.length);
  const first = deltas[0]!;
  assert.equal(first.kind === 'delta' && first.logprobs![0]!.top.length, 2);
});

test('overloaded scheduler → ServingError with retry-after; engine error → generation_failed', async () => {
  const busy = new GenerationService({
    scheduler: new ScriptedScheduler({ tokens: () => [], reject: () => new SchedulerRejection('queue full', 'overloaded', 3) }),
    tokenizer: tok,
  });
  assert.throws(() => busy.start(params()), (err: unknown) => err instanceof ServingError && err.reason === 'overloaded' && err.retryAfterSeconds === 3);
  const failing = new GenerationService({ scheduler: new ScriptedScheduler({ tokens: () => ids(' a b c'), failAfterTokens: 1 }), tokenizer: tok });
  await assert.rejects(collect(failing.start(params())), (err: unknown) => err instanceof ServingError && err.reason === 'generation_failed');
});

test('leaving the stream early aborts the request at the scheduler', async () => {
  const scheduler = new ScriptedScheduler({ tokens: () => ids(' one two three four five six') });
  const done: { outcome: string }[] = [];
  const service = new GenerationService({ scheduler, tokenizer: tok, observer: { onRequestDone: (i) => done.push(i) } });
  for await (const e of service.start(params())) {
    if (e.kind === 'delta') break;
  }
  assert.equal(scheduler.records[0]!.aborted, true);
  assert.equal(done[0]!.outcome, 'aborted');
  const stream = service.start(params({ requestId: 'r2' }));
  stream.abort();
  assert.equal(scheduler.records[1]!.aborted, true);
});

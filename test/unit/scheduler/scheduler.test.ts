import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../../../src/scheduler/scheduler.js';
import { SchedulerRejection } from '../../../src/scheduler/types.js';
import {
  RecordingEngine,
  assertMemoryReturned,
  assertPlansWithinLimits,
  collect,
  prompt,
  request,
  runAlone,
  startScheduler,
  ticks,
  tinyPools,
} from './scheduler-harness.js';

describe('Scheduler basics', () => {
  it('generates maxTokens tokens and finishes with length, the same as the engine alone', async () => {
    const { scheduler, engine } = await startScheduler({});
    const req = request({ promptTokens: prompt(10), maxTokens: 12 });
    const got = await collect(scheduler.submit(req));
    assert.equal(got.tokens[0]!.length, 12);
    assert.deepEqual(got.finishes[0], [{ reason: 'length' }]);
    assert.deepEqual(got.order.at(-1), 'finished');
    assert.deepEqual(got.tokens, (await runAlone({}, req)).tokens);
    assertMemoryReturned(scheduler);
    assert.equal(engine.fake.liveSequenceCount, 1, 'release reaches the engine with the next step');
    await scheduler.close();
  });

  it('batches concurrent requests without changing any output', async () => {
    const { scheduler, engine, options } = await startScheduler({}, { maxNumBatchedTokens: 24, maxNumSeqs: 4 });
    const reqs = Array.from({ length: 7 }, (_, i) => request({ requestId: `r${i}`, promptTokens: prompt(5 + i * 9, i), maxTokens: 4 + i }));
    const results = await Promise.all(reqs.map((r) => collect(scheduler.submit(r))));
    for (let i = 0; i < reqs.length; i++) {
      assert.deepEqual(results[i]!.tokens, (await runAlone({}, reqs[i]!)).tokens, `request ${i}`);
    }
    assert.ok(engine.plans.some((p) => p.sequences.length > 1), 'some steps carried several sequences');
    assertPlansWithinLimits(engine, options);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('splits a long prompt into chunks and samples only on the last', async () => {
    const { scheduler, engine } = await startScheduler({}, { maxNumBatchedTokens: 16 });
    const req = request({ promptTokens: prompt(50), maxTokens: 3 });
    const got = await collect(scheduler.submit(req));
    const chunks = engine.plans.map((p) => p.sequences[0]!).filter((s) => s.startPosition < 50);
    assert.deepEqual(chunks.map((s) => [s.startPosition, s.tokens.length, s.sample]), [[0, 16, false], [16, 16, false], [32, 16, false], [48, 2, true]]);
    assert.deepEqual(got.tokens, (await runAlone({}, req)).tokens);
    await scheduler.close();
  });

  it('gives running decodes one token each before prefill chunks fill the budget', async () => {
    const { scheduler, engine } = await startScheduler({ stepLatencyMs: 2 }, { maxNumBatchedTokens: 16 });
    const first = scheduler.submit(request({ requestId: 'a', promptTokens: prompt(4), maxTokens: 20 }));
    const firstDone = collect(first);
    await ticks(20);
    const second = collect(scheduler.submit(request({ requestId: 'b', promptTokens: prompt(60, 1), maxTokens: 2 })));
    await Promise.all([firstDone, second]);
    const mixed = engine.plans.find((p) => p.sequences.length === 2 && p.sequences.some((s) => s.tokens.length > 1));
    assert.ok(mixed, 'a step mixed a decode with a prefill chunk');
    const decode = mixed.sequences.find((s) => s.tokens.length === 1)!;
    const prefill = mixed.sequences.find((s) => s.tokens.length > 1)!;
    assert.equal(decode.sample, true);
    assert.equal(prefill.tokens.length, 15, 'prefill took the rest of the budget');
    await scheduler.close();
  });

  it('sequences carry stable slots and startPosition equals tokens computed', async () => {
    const { scheduler, engine } = await startScheduler({}, { maxNumBatchedTokens: 8 });
    await collect(scheduler.submit(request({ promptTokens: prompt(20), maxTokens: 5 })));
    let position = 0;
    for (const plan of engine.plans) {
      const s = plan.sequences[0]!;
      assert.equal(s.startPosition, position);
      assert.equal(s.slot, engine.plans[0]!.sequences[0]!.slot);
      assert.ok(s.pageTable.length * 16 >= position + s.tokens.length);
      position += s.tokens.length;
    }
    assert.deepEqual([...engine.plans[0]!.resetSlots], [engine.plans[0]!.sequences[0]!.slot]);
    await scheduler.close();
  });
});

describe('Scheduler stop conditions', () => {
  it('stops on eos without emitting it, and ignoreEos keeps going', async () => {
    const { scheduler } = await startScheduler({ eosProbability: 1 });
    const stopped = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10 })));
    assert.deepEqual(stopped.tokens, [[]]);
    assert.deepEqual(stopped.finishes[0], [{ reason: 'stop', stopTokenId: 2 }]);
    const ignored = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10, ignoreEos: true })));
    assert.equal(ignored.tokens[0]!.length, 10);
    assert.ok(ignored.tokens[0]!.includes(2), 'eos appears as an ordinary token');
    assert.deepEqual(ignored.finishes[0], [{ reason: 'length' }]);
    await scheduler.close();
  });

  it('minTokens bans eos until reached, then eos stops', async () => {
    const { scheduler } = await startScheduler({ eosProbability: 1 });
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10, minTokens: 3 })));
    assert.equal(got.tokens[0]!.length, 3);
    assert.ok(!got.tokens[0]!.includes(2));
    assert.deepEqual(got.finishes[0], [{ reason: 'stop', stopTokenId: 2 }]);
    await scheduler.close();
  });

  it('stops on a stop token id', async () => {
    const base = request({ promptTokens: prompt(9), maxTokens: 10 });
    const reference = (await runAlone({}, base)).tokens[0]!;
    const stopId = reference[4]!;
    const { scheduler } = await startScheduler({});
    const got = await collect(scheduler.submit({ ...base, stopTokenIds: [stopId] }));
    assert.deepEqual(got.tokens[0], reference.slice(0, reference.indexOf(stopId)));
    assert.deepEqual(got.finishes[0], [{ reason: 'stop', stopTokenId: stopId }]);
    await scheduler.close();
  });

  it('stops at maxModelLen with length', async () => {
    const { scheduler } = await startScheduler({}, { maxModelLen: 20 });
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(15), maxTokens: 100 })));
    assert.equal(got.tokens[0]!.length, 5);
    assert.deepEqual(got.finishes[0], [{ reason: 'length' }]);
    await scheduler.close();
  });

  it('handle.finish(index) ends that completion before the next step', async () => {
    const { scheduler, engine } = await startScheduler({ stepLatencyMs: 1 });
    const handle = scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 50 }));
    const got = await collect(handle, 1, (kind, count) => {
      if (kind === 'token' && count === 3) handle.finish(0);
    });
    assert.equal(got.tokens[0]!.length, 3);
    assert.deepEqual(got.finishes[0], [{ reason: 'stop' }]);
    assert.ok(engine.plans.length <= 4);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('maxTokens 0 computes the prompt, emits prompt logprobs and finishes with no tokens', async () => {
    const { scheduler } = await startScheduler({}, { maxNumBatchedTokens: 16 });
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(40), maxTokens: 0, n: 2, promptLogprobs: 1 })), 2);
    assert.deepEqual(got.order, ['prompt-logprobs', 'finished', 'finished']);
    assert.equal(got.promptLogprobs[0]!.length, 39);
    assert.deepEqual(got.finishes, [[{ reason: 'length' }], [{ reason: 'length' }]]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });
});

describe('Scheduler admission and back-pressure', () => {
  it('rejects a prompt longer than maxModelLen, naming the limit', async () => {
    const { scheduler } = await startScheduler({}, { maxModelLen: 32 });
    assert.throws(
      () => scheduler.submit(request({ promptTokens: prompt(33) })),
      (e: unknown) => e instanceof SchedulerRejection && e.reason === 'too_long' && /max_model_len \(32\)/.test(e.message),
    );
    await scheduler.close();
  });

  it('rejects a prompt needing more KV pages than the whole pool', async () => {
    const { scheduler } = await startScheduler(tinyPools(2, 3), { maxNumSeqs: 2 });
    assert.throws(
      () => scheduler.submit(request({ promptTokens: prompt(49) })),
      (e: unknown) => e instanceof SchedulerRejection && e.reason === 'too_long' && /4 KV pages.*holds 3 pages \(48 tokens\)/.test(e.message),
    );
    await collect(scheduler.submit(request({ promptTokens: prompt(48), maxTokens: 1 })));
    await scheduler.close();
  });

  it('rejects with overloaded and Retry-After when maxWaiting are already waiting', async () => {
    const { scheduler } = await startScheduler({}, { maxWaiting: 2 });
    const a = scheduler.submit(request({ promptTokens: prompt(5) }));
    const b = scheduler.submit(request({ promptTokens: prompt(5) }));
    assert.throws(
      () => scheduler.submit(request({ promptTokens: prompt(5) })),
      (e: unknown) => e instanceof SchedulerRejection && e.reason === 'overloaded' && (e.retryAfterSeconds ?? 0) >= 1,
    );
    await Promise.all([collect(a), collect(b)]);
    await collect(scheduler.submit(request({ promptTokens: prompt(5) })));
    await scheduler.close();
  });

  it('never runs more sequences than state slots (slot exhaustion)', async () => {
    const { scheduler, engine, options } = await startScheduler(tinyPools(2, 64), { maxNumSeqs: 2 });
    const reqs = Array.from({ length: 6 }, (_, i) => request({ promptTokens: prompt(8, i), maxTokens: 6 }));
    const results = await Promise.all(reqs.map((r) => collect(scheduler.submit(r))));
    assert.ok(engine.plans.every((p) => p.sequences.length <= 2));
    for (const r of results) assert.equal(r.tokens[0]!.length, 6);
    assert.equal(scheduler.stats().slotsTotal, 2);
    assertPlansWithinLimits(engine, options);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('waits for pages when the first chunk does not fit (page exhaustion at admission)', async () => {
    const { scheduler, engine } = await startScheduler(tinyPools(4, 4), { maxNumSeqs: 4 });
    const a = collect(scheduler.submit(request({ requestId: 'a', promptTokens: prompt(48), maxTokens: 10 })));
    const b = collect(scheduler.submit(request({ requestId: 'b', promptTokens: prompt(40, 1), maxTokens: 3 })));
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.tokens[0]!.length + rb.tokens[0]!.length, 13);
    for (const plan of engine.plans) {
      const pages = new Set<number>();
      for (const s of plan.sequences) for (const p of s.pageTable) pages.add(p);
      assert.ok(pages.size <= 4);
    }
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });
});

describe('Scheduler preemption', () => {
  it('preempts the newest sequence when pages run out; streams continue without gaps or duplicates', async () => {
    const preemptions: number[] = [];
    const engine = new RecordingEngine(tinyPools(4, 7));
    const options = { maxNumSeqs: 4, maxNumBatchedTokens: 32, maxModelLen: 4096, maxWaiting: 100 };
    const scheduler = new Scheduler(engine, options, { observer: { onStep() {}, onPreempt: (n) => preemptions.push(n) } });
    await scheduler.start();
    const reqs = Array.from({ length: 4 }, (_, i) => request({ requestId: `p${i}`, promptTokens: prompt(20, i), maxTokens: 30 }));
    const results = await Promise.all(reqs.map((r) => collect(scheduler.submit(r))));
    assert.ok(scheduler.stats().preemptedTotal > 0, 'the pool forced preemption');
    assert.ok(preemptions.length > 0);
    for (let i = 0; i < reqs.length; i++) {
      assert.deepEqual(results[i]!.tokens, (await runAlone({}, reqs[i]!)).tokens, `request ${i} unaffected by preemption`);
      assert.deepEqual(results[i]!.finishes[0], [{ reason: 'length' }]);
    }
    const released = engine.plans.flatMap((p) => p.releasedSeqIds);
    assert.ok(released.length >= 4);
    assertPlansWithinLimits(engine, options);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('the victim is the newest running sequence', async () => {
    const { scheduler, engine } = await startScheduler(tinyPools(2, 4), { maxNumSeqs: 2 });
    const old = collect(scheduler.submit(request({ requestId: 'old', promptTokens: prompt(16), maxTokens: 40 })));
    const young = collect(scheduler.submit(request({ requestId: 'young', promptTokens: prompt(16, 1), maxTokens: 40 })));
    await Promise.all([old, young]);
    const firstRelease = engine.plans.find((p) => p.releasedSeqIds.length > 0)!;
    assert.deepEqual(firstRelease.releasedSeqIds, [1], 'seq 1 (younger) was preempted first');
    await scheduler.close();
  });

  it('a sequence that alone outgrows the KV pool finishes with length', async () => {
    const { scheduler } = await startScheduler(tinyPools(1, 2), { maxNumSeqs: 1 });
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(20), maxTokens: 100 })));
    assert.equal(got.tokens[0]!.length, 13, 'positions 0..31 fit in the pool; the token sampled at 31 is the last');
    assert.deepEqual(got.finishes[0], [{ reason: 'length' }]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });
});

describe('Scheduler cancellation', () => {
  it('abort mid-prefill frees memory and the sequence leaves the batch', async () => {
    const { scheduler, engine } = await startScheduler({ stepLatencyMs: 1 }, { maxNumBatchedTokens: 16 });
    const handle = scheduler.submit(request({ promptTokens: prompt(200), maxTokens: 5 }));
    const other = collect(scheduler.submit(request({ promptTokens: prompt(5, 3), maxTokens: 30 })));
    while (engine.plans.length < 3) await ticks(1);
    handle.abort();
    const got = await collect(handle);
    assert.deepEqual(got.finishes[0], [{ reason: 'abort' }]);
    assert.deepEqual(got.tokens, [[]]);
    await other;
    const abortedSeq = 0;
    const releaseStep = engine.plans.findIndex((p) => p.releasedSeqIds.includes(abortedSeq));
    assert.ok(releaseStep > 0);
    assert.ok(engine.plans.slice(releaseStep).every((p) => p.sequences.every((s) => s.seqId !== abortedSeq)));
    assert.ok(engine.plans.filter((p) => p.sequences.some((s) => s.seqId === abortedSeq)).length < 13, 'prefill did not run to the end');
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('breaking out of the iteration cancels the request', async () => {
    const { scheduler } = await startScheduler({ stepLatencyMs: 1 });
    const handle = scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 1000 }));
    const got = await collect(handle, 1, (_kind, count) => (count === 4 ? 'break' : undefined));
    assert.equal(got.tokens[0]!.length, 4);
    await ticks(3);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('an aborted waiting request never reaches the engine', async () => {
    const { scheduler, engine } = await startScheduler(tinyPools(1, 64), { maxNumSeqs: 1 });
    const first = collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 5 })));
    const queued = scheduler.submit(request({ promptTokens: prompt(5, 1), maxTokens: 5 }));
    queued.abort();
    assert.deepEqual((await collect(queued)).finishes[0], [{ reason: 'abort' }]);
    await first;
    assert.ok(engine.plans.every((p) => p.sequences.every((s) => s.seqId === 0)));
    await scheduler.close();
  });
});

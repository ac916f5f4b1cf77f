import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/engine.js';
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
  sampling,
  startScheduler,
  ticks,
  tinyPools,
} from './scheduler-harness.js';
import { completionSampling } from '../../../src/scheduler/step-plan.js';

describe('Scheduler n > 1', () => {
  it('prefills the prompt once, forks with copySlot and shares the full pages', async () => {
    const { scheduler, engine, options } = await startScheduler({}, { maxNumBatchedTokens: 64 });
    const req = request({ promptTokens: prompt(40), maxTokens: 6, n: 3, sampling: sampling({ temperature: 0.8, seed: 7 }) });
    const got = await collect(scheduler.submit(req), 3);
    assert.equal(engine.copies, 2);
    const first = engine.plans[0]!.sequences;
    assert.deepEqual(first.map((s) => [s.seqId, s.startPosition, s.tokens.length, s.sample]), [[0, 0, 32, false]], 'parent stops at the page boundary');
    const tails = engine.plans[1]!.sequences;
    assert.deepEqual(tails.map((s) => [s.startPosition, s.tokens.length, s.sample]), [[32, 8, true], [32, 8, true], [32, 8, true]]);
    const shared = tails.map((s) => [...s.pageTable.subarray(0, 2)]);
    assert.deepEqual(shared[1], shared[0]);
    assert.deepEqual(shared[2], shared[0]);
    assert.equal(new Set(tails.map((s) => s.pageTable[2])).size, 3, 'each sibling writes its own tail page');
    assert.equal(engine.plans.reduce((sum, p) => sum + p.sequences.filter((s) => s.startPosition < 32).length, 0), 1, 'prompt prefix computed once');
    for (let i = 0; i < 3; i++) {
      // Completion i samples with completionSampling(seed, i): the same tokens as a solo run with that seed.
      const alone = (await runAlone({}, { ...req, n: 1, sampling: completionSampling(req.sampling, i) })).tokens[0];
      assert.equal(got.tokens[i]!.length, 6);
      assert.deepEqual(got.tokens[i], alone, 'completion i, seeded seed+i·φ → the same tokens as n = 1 with that seed');
      assert.deepEqual(got.finishes[i], [{ reason: 'length' }]);
    }
    assert.equal(new Set(got.tokens.map((t) => t.join(','))).size, 3, 'a seeded n > 1 request gives n different completions');
    assertPlansWithinLimits(engine, options);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('siblings without a seed sample differently', async () => {
    const { scheduler } = await startScheduler({});
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(40), maxTokens: 8, n: 3, sampling: sampling({ temperature: 1 }) })), 3);
    assert.equal(new Set(got.tokens.map((t) => t.join(','))).size, 3);
    await scheduler.close();
  });

  it('a sibling without a free slot at fork time recomputes the prompt on its own', async () => {
    const { scheduler, engine } = await startScheduler(tinyPools(2, 64), { maxNumSeqs: 2 });
    const req = request({ promptTokens: prompt(40), maxTokens: 5, n: 3 });
    const got = await collect(scheduler.submit(req), 3);
    assert.equal(engine.copies, 1);
    const alone = (await runAlone({}, { ...req, n: 1 })).tokens[0];
    for (let i = 0; i < 3; i++) assert.deepEqual(got.tokens[i], alone);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('a short prompt (one page) runs n independent sequences', async () => {
    const { scheduler, engine } = await startScheduler({});
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(10), maxTokens: 4, n: 2 })), 2);
    assert.equal(engine.copies, 0);
    assert.deepEqual(got.tokens[0], got.tokens[1]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('aborting while siblings are being forked frees everything', async () => {
    const engine = new RecordingEngine({});
    const scheduler = new Scheduler(engine, { maxNumSeqs: 4, maxNumBatchedTokens: 64, maxModelLen: 4096, maxWaiting: 10 });
    await scheduler.start();
    const copy = engine.copySlot.bind(engine);
    let abort = (): void => undefined;
    engine.copySlot = async (src, dst) => {
      await copy(src, dst);
      abort();
    };
    const handle = scheduler.submit(request({ promptTokens: prompt(40), maxTokens: 5, n: 3 }));
    abort = () => handle.abort();
    const got = await collect(handle, 3);
    assert.deepEqual(got.finishes, [[{ reason: 'abort' }], [{ reason: 'abort' }], [{ reason: 'abort' }]]);
    assert.equal(engine.copies, 1, 'the second sibling was never forked');
    assertMemoryReturned(scheduler);
    abort = () => undefined;
    assert.equal((await collect(scheduler.submit(request({ promptTokens: prompt(40), maxTokens: 5, n: 2 })), 2)).tokens[1]!.length, 5);
    await scheduler.close();
  });

  it('a failed copySlot fails only that sibling', async () => {
    const engine = new RecordingEngine({});
    const scheduler = new Scheduler(engine, { maxNumSeqs: 4, maxNumBatchedTokens: 64, maxModelLen: 4096, maxWaiting: 10 });
    await scheduler.start();
    const copy = engine.copySlot.bind(engine);
    let calls = 0;
    engine.copySlot = async (src, dst) => {
      if (calls++ === 0) throw new EngineError('copy failed', 'COPY');
      await copy(src, dst);
    };
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(40), maxTokens: 5, n: 3 })), 3);
    assert.equal(got.finishes[1]![0]!.reason, 'error');
    assert.deepEqual(got.finishes[0], [{ reason: 'length' }]);
    assert.deepEqual(got.finishes[2], [{ reason: 'length' }]);
    assert.deepEqual(got.tokens[2], got.tokens[0]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('finish(index) ends one sibling, the others go on; preemption under n > 1 keeps outputs', async () => {
    const { scheduler } = await startScheduler(tinyPools(3, 8), { maxNumSeqs: 3, maxNumBatchedTokens: 16 });
    const req = request({ promptTokens: prompt(35), maxTokens: 40, n: 3, sampling: sampling({ temperature: 0.7, seed: 3 }) });
    const handle = scheduler.submit(req);
    const got = await collect(handle, 3, (kind, count) => {
      if (kind === 'token' && count === 5) handle.finish(1);
    });
    assert.deepEqual(got.finishes[1], [{ reason: 'stop' }]);
    assert.equal(got.tokens[0]!.length, 40);
    assert.equal(got.tokens[2]!.length, 40);
    const alone = async (i: number) => (await runAlone({}, { ...req, n: 1, sampling: completionSampling(req.sampling, i) })).tokens[0]!;
    assert.deepEqual(got.tokens[0], await alone(0));
    assert.deepEqual(got.tokens[1], (await alone(1)).slice(0, got.tokens[1]!.length));
    assert.deepEqual(got.tokens[2], await alone(2));
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });
});

describe('Scheduler logprobs', () => {
  it('gathers prompt logprobs across chunks and emits them once before the first token', async () => {
    const { scheduler } = await startScheduler({}, { maxNumBatchedTokens: 16 });
    const req = request({ promptTokens: prompt(45), maxTokens: 3, promptLogprobs: 2 });
    const got = await collect(scheduler.submit(req));
    assert.deepEqual(got.order, ['prompt-logprobs', 'token', 'token', 'token', 'finished']);
    const entries = got.promptLogprobs[0]!;
    assert.equal(entries.length, 44);
    entries.forEach((e, i) => {
      assert.equal(e.tokenId, req.promptTokens[i + 1]);
      assert.ok(e.logprob <= 0);
      assert.equal(e.top!.tokenIds.length, 2);
    });
    const alone = await runAlone({}, req);
    assert.deepEqual(entries.map((e) => e.logprob), alone.promptLogprobs[0]!.map((e) => e.logprob), 'chunking does not change prompt logprobs');
    await scheduler.close();
  });

  it('returns token logprobs with sorted top-N', async () => {
    const { scheduler } = await startScheduler({});
    const got = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 4, sampling: sampling({ logprobs: 3 }) })));
    for (const [i, lp] of got.logprobs[0]!.entries()) {
      assert.ok(lp);
      assert.equal(lp.tokenId, got.tokens[0]![i]);
      assert.ok(lp.logprob <= 0);
      const top = [...lp.top!.logprobs];
      assert.equal(top.length, 3);
      assert.deepEqual(top, [...top].sort((a, b) => b - a));
      assert.equal(lp.top!.tokenIds[0], lp.tokenId, 'greedy picks the most likely token');
    }
    await scheduler.close();
  });
});

describe('Scheduler faults and lifecycle', () => {
  it('a failed step fails its sequences with error, frees memory, and the loop keeps serving', async () => {
    const { scheduler, engine } = await startScheduler({});
    engine.failWhen = (plan) => plan.sequences.some((s) => s.seqId === 0) && plan.stepId === 2;
    const failed = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10 })));
    assert.equal(failed.tokens[0]!.length, 1);
    assert.equal(failed.finishes[0]![0]!.reason, 'error');
    assert.match(failed.finishes[0]![0]!.error!.message, /injected failure/);
    assertMemoryReturned(scheduler);
    const ok = await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10 })));
    assert.equal(ok.tokens[0]!.length, 10);
    assert.deepEqual(ok.tokens, (await runAlone({}, request({ promptTokens: prompt(5), maxTokens: 10 }))).tokens);
    await scheduler.close();
  });

  it('the fake engine hook failOnStep fails only the sequences of that step', async () => {
    let failNext = false;
    const { scheduler } = await startScheduler({ failOnStep: () => failNext && !(failNext = false) });
    const a = scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 10 }));
    const aDone = collect(a, 1, (_kind, count) => {
      if (count === 2) failNext = true;
    });
    const result = await aDone;
    assert.equal(result.finishes[0]![0]!.reason, 'error');
    assert.ok(result.finishes[0]![0]!.error instanceof EngineError);
    assert.equal((await collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 3 })))).tokens[0]!.length, 3);
    await scheduler.close();
  });

  it('a non-retryable engine error fails everything and refuses new work', async () => {
    const engine = new RecordingEngine({ failOnStep: () => new EngineError('device lost', 'DEVICE_LOST', false) });
    const scheduler = new Scheduler(engine, { maxNumSeqs: 1, maxNumBatchedTokens: 64, maxModelLen: 4096, maxWaiting: 10 });
    await scheduler.start();
    const a = collect(scheduler.submit(request({ promptTokens: prompt(5) })));
    const b = collect(scheduler.submit(request({ promptTokens: prompt(5, 1) })));
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.finishes[0]![0]!.reason, 'error');
    assert.equal(rb.finishes[0]![0]!.reason, 'error');
    assert.equal(scheduler.failed, true);
    assert.throws(() => scheduler.submit(request({ promptTokens: prompt(5) })), (e: unknown) => e instanceof SchedulerRejection && e.reason === 'engine_failed');
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('drain lets accepted requests finish and refuses new ones', async () => {
    const { scheduler } = await startScheduler({ stepLatencyMs: 1 }, { maxNumSeqs: 2 });
    const all = [1, 2, 3].map((i) => collect(scheduler.submit(request({ promptTokens: prompt(5, i), maxTokens: 5 }))));
    await scheduler.drain(60_000);
    assert.throws(() => scheduler.submit(request({ promptTokens: prompt(5) })), (e: unknown) => e instanceof SchedulerRejection && e.reason === 'shutting_down');
    for (const r of await Promise.all(all)) assert.deepEqual(r.finishes[0], [{ reason: 'length' }]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('drain aborts what is left at the deadline', async () => {
    const { scheduler } = await startScheduler({ stepLatencyMs: 2 });
    const pending = collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 100000, ignoreEos: true })));
    await scheduler.drain(20);
    const got = await pending;
    assert.deepEqual(got.finishes[0], [{ reason: 'abort' }]);
    assertMemoryReturned(scheduler);
    await scheduler.close();
  });

  it('close aborts outstanding requests and stops the loop', async () => {
    const { scheduler } = await startScheduler({ stepLatencyMs: 1 });
    const pending = collect(scheduler.submit(request({ promptTokens: prompt(5), maxTokens: 100000 })));
    await ticks(10);
    await scheduler.close();
    assert.deepEqual((await pending).finishes[0], [{ reason: 'abort' }]);
    assert.throws(() => scheduler.submit(request({ promptTokens: prompt(5) })), SchedulerRejection);
  });

  it('reports each step to the observer and logs one debug line per step', async () => {
    const steps: Array<{ tokens: number; prefillTokens: number; decodeTokens: number; sequences: number }> = [];
    const debugLines: Array<Record<string, unknown>> = [];
    const engine = new RecordingEngine({});
    const logger = { debug: (o: object) => debugLines.push(o as Record<string, unknown>), info() {}, warn() {}, error() {} };
    const scheduler = new Scheduler(engine, { maxNumSeqs: 4, maxNumBatchedTokens: 16, maxModelLen: 4096, maxWaiting: 10 }, { logger, observer: { onStep: (s) => steps.push(s) } });
    await scheduler.start();
    await collect(scheduler.submit(request({ promptTokens: prompt(20), maxTokens: 3 })));
    assert.deepEqual(steps.map((s) => [s.tokens, s.prefillTokens, s.decodeTokens, s.sequences]), [[16, 16, 0, 1], [4, 4, 0, 1], [1, 0, 1, 1], [1, 0, 1, 1]]);
    const stepLines = debugLines.filter((l) => 'stepId' in l && 'slotsFree' in l);
    assert.equal(stepLines.length, 4);
    assert.ok(stepLines.every((l) => typeof l.pagesFree === 'number' && typeof l.waiting === 'number' && typeof l.tokens === 'number'));
    await scheduler.close();
  });
});

/**
 * Property tests: random arrivals, prompt/output lengths, n, cancellations and tiny pools that force
 * preemption. Every admitted request finishes exactly once with the tokens it gets when run alone,
 * memory returns to zero, and no step exceeds the token budget or the pools.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { GenerationRequest } from '../../../src/scheduler/types.js';
import {
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
  type Collected,
} from './scheduler-harness.js';

const engineBase = { eosProbability: 0.04 };

const requestSpec = fc.record({
  promptLength: fc.integer({ min: 1, max: 70 }),
  maxTokens: fc.integer({ min: 0, max: 40 }),
  n: fc.integer({ min: 1, max: 3 }),
  arrivalTicks: fc.integer({ min: 0, max: 6 }),
  cancel: fc.option(fc.record({ afterEvents: fc.integer({ min: 1, max: 12 }), how: fc.constantFrom('abort', 'break') }), { freq: 3 }),
  seed: fc.option(fc.integer({ min: 0, max: 1000 }), { freq: 2 }),
  minTokens: fc.integer({ min: 0, max: 3 }),
  promptLogprobs: fc.option(fc.constant(1), { freq: 4 }),
  stopTokenId: fc.option(fc.integer({ min: 3, max: 31999 }), { freq: 4 }),
});

const scenario = fc.record({
  slots: fc.integer({ min: 1, max: 5 }),
  pages: fc.integer({ min: 5, max: 14 }),
  budget: fc.integer({ min: 4, max: 48 }),
  requests: fc.array(requestSpec, { minLength: 1, maxLength: 9 }),
});

type Spec = typeof requestSpec extends fc.Arbitrary<infer T> ? T : never;

function toRequest(spec: Spec, i: number, pageCount: number): GenerationRequest {
  // A lone sequence must fit the pool, or tiny pools would legitimately cut it short ('length').
  const capacity = pageCount * 16;
  const promptLength = Math.min(spec.promptLength, capacity - 1);
  const maxTokens = Math.min(spec.maxTokens, capacity - promptLength);
  const req = request({
    requestId: `q${i}`,
    promptTokens: prompt(promptLength, i + 1),
    maxTokens,
    n: spec.n,
    minTokens: spec.minTokens,
    promptLogprobs: spec.promptLogprobs,
    sampling: spec.seed === null ? sampling({}) : sampling({ temperature: 0.9, topP: 0.95, seed: spec.seed }),
  });
  if (spec.stopTokenId !== null) req.stopTokenIds = [spec.stopTokenId];
  return req;
}

function isPrefix(prefix: number[], of: number[]): boolean {
  return prefix.length <= of.length && prefix.every((t, i) => t === of[i]);
}

/** Tiny pools, everything at once: most runs preempt. */
const crowded = fc.record({
  slots: fc.integer({ min: 2, max: 4 }),
  pages: fc.integer({ min: 4, max: 7 }),
  budget: fc.integer({ min: 8, max: 40 }),
  requests: fc.array(
    fc.record({
      promptLength: fc.integer({ min: 8, max: 40 }),
      maxTokens: fc.integer({ min: 10, max: 40 }),
      n: fc.integer({ min: 1, max: 3 }),
      arrivalTicks: fc.constant(0),
      cancel: fc.constant(null),
      seed: fc.option(fc.integer({ min: 0, max: 1000 })),
      minTokens: fc.integer({ min: 0, max: 12 }),
      promptLogprobs: fc.option(fc.constant(1)),
      stopTokenId: fc.constant(null),
    }),
    { minLength: 3, maxLength: 6 },
  ),
});

describe('Scheduler properties', () => {
  it('every request finishes once with its solo output; memory returns to zero; limits hold', async () => {
    await fc.assert(fc.asyncProperty(scenario, async (sc) => {
      await checkScenario(sc);
    }), { numRuns: Number(process.env.PROPERTY_RUNS ?? 40) });
  });

  it('the same holds when tiny pools force preemption', async () => {
    let preemptedRuns = 0;
    await fc.assert(
      fc.asyncProperty(crowded, async (sc) => {
        if ((await checkScenario(sc)) > 0) preemptedRuns++;
      }),
      { numRuns: Number(process.env.PROPERTY_RUNS ?? 25) },
    );
    assert.ok(preemptedRuns > 0, 'some runs preempted');
  });
});

async function checkScenario(sc: { slots: number; pages: number; budget: number; requests: Spec[] }): Promise<number> {
  const { scheduler, engine, options } = await startScheduler({ ...engineBase, ...tinyPools(sc.slots, sc.pages) }, {
    maxNumSeqs: sc.slots,
    maxNumBatchedTokens: sc.budget,
  });
  const pageCount = engine.sizes!.pageCount;
  const reqs = sc.requests.map((spec, i) => toRequest(spec, i, pageCount));
  const runs: Array<Promise<Collected>> = [];
  for (let i = 0; i < reqs.length; i++) {
    const spec = sc.requests[i]!;
    await ticks(spec.arrivalTicks);
    const handle = scheduler.submit(reqs[i]!);
    const cancel = spec.cancel;
    runs.push(
      collect(handle, reqs[i]!.n, (_kind, count) => {
        if (!cancel || count !== cancel.afterEvents) return;
        if (cancel.how === 'break') return 'break';
        handle.abort();
      }),
    );
  }
  const results = await Promise.all(runs);
  await ticks(2);
  for (let i = 0; i < reqs.length; i++) {
    const req = reqs[i]!;
    const got = results[i]!;
    const cancel = sc.requests[i]!.cancel;
    const solo = await runAlone(engineBase, req);
    for (let k = 0; k < req.n; k++) {
      assert.ok(solo.finishes[k]!.length === 1 && solo.finishes[k]![0]!.reason !== 'abort');
      if (cancel?.how === 'break' && got.order.length >= cancel.afterEvents) {
        assert.ok(got.finishes[k]!.length <= 1);
        assert.ok(isPrefix(got.tokens[k]!, solo.tokens[k]!), `q${i}.${k} prefix of solo output`);
        continue;
      }
      assert.equal(got.finishes[k]!.length, 1, `q${i}.${k} finished exactly once`);
      const reason = got.finishes[k]![0]!.reason;
      if (reason === 'abort') {
        assert.ok(cancel, 'only cancelled requests abort');
        assert.ok(isPrefix(got.tokens[k]!, solo.tokens[k]!), `q${i}.${k} prefix of solo output`);
      } else {
        assert.deepEqual(got.tokens[k], solo.tokens[k], `q${i}.${k} tokens equal the solo run`);
        assert.deepEqual(got.finishes[k], solo.finishes[k], `q${i}.${k} finish equals the solo run`);
        assert.ok(got.tokens[k]!.length <= req.maxTokens);
        if (reason === 'length') assert.equal(got.tokens[k]!.length, req.maxTokens);
      }
    }
    const promptEvents = got.order.filter((o) => o === 'prompt-logprobs').length;
    assert.ok(promptEvents <= 1, 'prompt logprobs at most once');
    if (promptEvents === 1) {
      assert.ok(got.order.indexOf('prompt-logprobs') < Math.max(0, got.order.indexOf('token')) || !got.order.includes('token'));
      assert.deepEqual(got.promptLogprobs[0]!.map((e) => e.logprob), solo.promptLogprobs[0]!.map((e) => e.logprob));
    }
  }
  assertPlansWithinLimits(engine, options);
  assertMemoryReturned(scheduler);
  await scheduler.close();
  return scheduler.stats().preemptedTotal;
}

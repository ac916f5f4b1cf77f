/** Shared test harness: a FakeEngine wrapped to record plans, a scheduler factory and event collection. */
import assert from 'node:assert/strict';
import { GREEDY, type CacheSizes, type Engine, type SamplingParams, type StepPlan, type StepResult, type TokenLogprob } from '../../../src/engine/engine.js';
import { FakeEngine, type FakeEngineOptions } from '../../../src/engine/fake/fake-engine.js';
import { Scheduler } from '../../../src/scheduler/scheduler.js';
import type { FinishReason, GenerationHandle, GenerationRequest, SchedulerOptions } from '../../../src/scheduler/types.js';

/** Delegates to a FakeEngine and keeps every plan it ran, for budget/pool assertions. */
export class RecordingEngine implements Engine {
  readonly fake: FakeEngine;
  readonly plans: StepPlan[] = [];
  sizes: CacheSizes | null = null;
  copies = 0;
  /** Make the next step(s) reject: a predicate over the plan. */
  failWhen: ((plan: StepPlan) => boolean) | null = null;

  constructor(options: FakeEngineOptions = {}) {
    this.fake = new FakeEngine(options);
  }
  describe() {
    return this.fake.describe();
  }
  async initCache(sizes: CacheSizes) {
    this.sizes = sizes;
    await this.fake.initCache(sizes);
  }
  async step(plan: StepPlan): Promise<StepResult> {
    this.plans.push(plan);
    if (this.failWhen?.(plan)) {
      await new Promise((r) => setImmediate(r));
      throw new Error(`injected failure at step ${plan.stepId}`);
    }
    return this.fake.step(plan);
  }
  async copySlot(src: number, dst: number) {
    this.copies++;
    await this.fake.copySlot(src, dst);
  }
  async close() {
    await this.fake.close();
  }
}

/** Tiny pools: `slots` state slots and `pages` KV pages (1 byte each in the fake's accounting). */
export function tinyPools(slots: number, pages: number): FakeEngineOptions {
  return { stateSlotBytes: 1, kvPageBytes: 1, cacheBudgetBytes: slots + pages };
}

export async function startScheduler(engineOptions: FakeEngineOptions, options: Partial<SchedulerOptions> = {}) {
  const engine = new RecordingEngine(engineOptions);
  const schedulerOptions: SchedulerOptions = { maxNumSeqs: 8, maxNumBatchedTokens: 64, maxModelLen: 4096, maxWaiting: 1000, ...options };
  const scheduler = new Scheduler(engine, schedulerOptions);
  await scheduler.start();
  return { engine, scheduler, options: schedulerOptions };
}

export function prompt(length: number, salt = 0): Int32Array {
  return Int32Array.from({ length }, (_, i) => 3 + ((i * 7919 + salt * 104729) % 31000));
}

export function request(overrides: Partial<GenerationRequest> & { promptTokens: Int32Array }): GenerationRequest {
  return { requestId: 'r', maxTokens: 8, n: 1, sampling: GREEDY, promptLogprobs: null, ...overrides };
}

export function sampling(overrides: Partial<SamplingParams>): SamplingParams {
  return { ...GREEDY, ...overrides };
}

export interface Collected {
  tokens: number[][];
  logprobs: Array<Array<TokenLogprob | null>>;
  finishes: Array<Array<{ reason: FinishReason; stopTokenId?: number; error?: Error }>>;
  promptLogprobs: TokenLogprob[][];
  /** Event kinds in order, e.g. ['prompt-logprobs', 'token', 'finished']. */
  order: string[];
}

/** Drain a handle; `onEvent` may return 'break' to stop iterating (cancels the request). */
export async function collect(handle: GenerationHandle, n = 1, onEvent?: (kind: string, count: number) => 'break' | void): Promise<Collected> {
  const out: Collected = {
    tokens: Array.from({ length: n }, () => []),
    logprobs: Array.from({ length: n }, () => []),
    finishes: Array.from({ length: n }, () => []),
    promptLogprobs: [],
    order: [],
  };
  let count = 0;
  for await (const e of handle) {
    out.order.push(e.kind);
    count++;
    if (e.kind === 'token') {
      out.tokens[e.index]!.push(e.tokenId);
      out.logprobs[e.index]!.push(e.logprob);
    } else if (e.kind === 'finished') {
      const f: { reason: FinishReason; stopTokenId?: number; error?: Error } = { reason: e.reason };
      if (e.stopTokenId !== undefined) f.stopTokenId = e.stopTokenId;
      if (e.error) f.error = e.error;
      out.finishes[e.index]!.push(f);
    } else {
      out.promptLogprobs.push(e.logprobs);
    }
    if (onEvent?.(e.kind, count) === 'break') break;
  }
  return out;
}

/** Run one request alone on a roomy scheduler: the reference output. */
export async function runAlone(engineOptions: FakeEngineOptions, req: GenerationRequest): Promise<Collected> {
  const { scheduler } = await startScheduler({ ...engineOptions, cacheBudgetBytes: undefined, stateSlotBytes: undefined, kvPageBytes: undefined }, { maxNumSeqs: 8, maxNumBatchedTokens: 4096 });
  try {
    return await collect(scheduler.submit(req), req.n);
  } finally {
    await scheduler.close();
  }
}

/** Wait until the scheduler's loop has had `turns` chances to run. */
export async function ticks(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** Every plan respected the step budget, the sequence cap and the pool sizes. */
export function assertPlansWithinLimits(engine: RecordingEngine, options: SchedulerOptions): void {
  const sizes = engine.sizes!;
  for (const plan of engine.plans) {
    let tokens = 0;
    for (const s of plan.sequences) {
      tokens += s.tokens.length;
      assert.ok(s.slot >= 0 && s.slot < sizes.slotCount, `slot ${s.slot} within pool`);
      for (const page of s.pageTable) assert.ok(page >= 0 && page < sizes.pageCount, `page ${page} within pool`);
    }
    assert.ok(tokens <= options.maxNumBatchedTokens, `step ${plan.stepId}: ${tokens} tokens ≤ ${options.maxNumBatchedTokens}`);
    assert.ok(plan.sequences.length <= options.maxNumSeqs, `step ${plan.stepId}: ${plan.sequences.length} sequences ≤ ${options.maxNumSeqs}`);
  }
}

/** Memory is back to zero: no slot, no page, no sequence bookkeeping anywhere. */
export function assertMemoryReturned(scheduler: Scheduler): void {
  const stats = scheduler.stats();
  assert.equal(stats.running, 0, 'running');
  assert.equal(stats.waiting, 0, 'waiting');
  assert.equal(stats.slotsUsed, 0, 'slots used');
  assert.equal(stats.pagesUsed, 0, 'pages used');
  assert.equal(scheduler.liveSequenceMemory, 0, 'sequences holding memory');
}

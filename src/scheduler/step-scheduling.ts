/**
 * The scheduling policy of one step: which sequences compute how many tokens, under the token
 * budget, the state slots and the KV pages. Split from the Scheduler's loop (scheduler.ts), which
 * owns the queues and the sequence lifecycle and calls scheduleStep() once per step.
 *
 * Order: every running decode gets 1 token (oldest first), then running prefill chunks (incl.
 * recompute after preemption), then, only when nothing was preempted this step, waiting sequences
 * in FCFS order while a slot, the KV pages of their first chunk and the budget allow. When KV pages
 * run out, the newest running sequence is preempted (through the context's preempt()).
 *
 * Mutates: ctx.running and ctx.waiting (admission moves a sequence from waiting to running), the
 * cache (admit / grow), and sequences' status and `computed` on admission; preemption and the
 * "outgrew the cache" finish go through the context's callbacks so the Scheduler keeps its books.
 */
import type { HybridCache } from '../cache/index.js';
import type { Sequence } from './request-state.js';
import type { ScheduledChunk } from './step-plan.js';

export interface StepSchedulingContext {
  readonly cache: HybridCache;
  /** In admission order: the last one is the newest (first to be preempted). */
  readonly running: Sequence[];
  readonly waiting: Sequence[];
  /** Tokens one step may compute. */
  readonly tokenBudget: number;
  /** Free `seq`'s slot and pages and put it at the front of the waiting queue (it recomputes later). */
  preempt(seq: Sequence): void;
  /** `seq` runs alone and still does not fit the KV pool at `tokens` positions: end it ('length'). */
  finishOutgrown(seq: Sequence, tokens: number): void;
}

export interface ScheduledStep {
  chunks: ScheduledChunk[];
  /** Sequences preempted while scheduling this step. */
  preempted: number;
}

/** Tokens `seq` may compute in a chunk now: its gap, capped by the budget and a pending fork point. */
export function chunkLength(seq: Sequence, budget: number): number {
  let end = seq.tokens.length;
  if (seq.forkAt > seq.computed) end = Math.min(end, seq.forkAt);
  return Math.min(end - seq.computed, budget);
}

/** Picks this step's chunks (see the module comment for the order and what it mutates). */
export function scheduleStep(ctx: StepSchedulingContext): ScheduledStep {
  const { cache, running, waiting } = ctx;
  let budget = ctx.tokenBudget;
  const chunks = new Map<Sequence, ScheduledChunk>();
  let preempted = 0;

  // Grow `seq`'s pages to `end` positions, preempting the newest running sequences as needed.
  // False when `seq` itself had to go (preempted, or finished when it alone overflows the pool).
  const grow = (seq: Sequence, end: number): boolean => {
    while (!cache.grow(seq.seqId, end)) {
      const victim = running[running.length - 1]!;
      if (victim === seq && running.length === 1) {
        // Alone and still short: the pool cannot hold this sequence any longer; recompute would loop.
        ctx.finishOutgrown(seq, end);
        return false;
      }
      const victimChunk = chunks.get(victim);
      if (victimChunk) {
        chunks.delete(victim);
        budget += victimChunk.count;
      }
      ctx.preempt(victim);
      preempted++;
      if (victim === seq) return false;
    }
    return true;
  };

  const add = (seq: Sequence, count: number, isDecode: boolean): void => {
    const start = seq.computed;
    const end = start + count;
    chunks.set(seq, {
      seq,
      start,
      count,
      sample: end === seq.tokens.length && seq.request.request.maxTokens > 0,
      wantsPromptLogprobs: seq.request.wantsPromptLogprobs(start),
      isDecode,
    });
    budget -= count;
  };

  // 1. Running decodes, oldest first: one token each.
  for (let i = 0; i < running.length && budget > 0; i++) {
    const seq = running[i]!;
    if (seq.tokens.length - seq.computed !== 1) continue;
    if (grow(seq, seq.computed + 1)) add(seq, 1, seq.computed >= seq.promptLength);
  }
  // 2. Running prefill chunks (incl. recompute), oldest first, filling the remaining budget.
  for (let i = 0; i < running.length && budget > 0; i++) {
    const seq = running[i]!;
    if (chunks.has(seq)) continue;
    const count = chunkLength(seq, budget);
    if (count <= 0) continue;
    if (grow(seq, seq.computed + count)) add(seq, count, false);
  }
  // 3. Waiting sequences, FCFS, unless this step already had to preempt.
  if (preempted === 0) {
    while (waiting.length > 0 && budget > 0 && running.length < cache.slots.slotCount) {
      const seq = waiting[0]!;
      let count = chunkLength(seq, budget);
      // Nothing running: shrink the chunk to the free pages so a long recompute always progresses.
      if (running.length === 0) count = Math.min(count, cache.pages.freeCount * cache.tokensPerPage);
      if (count <= 0 || cache.admit(seq.seqId, count) === null) break;
      waiting.shift();
      seq.status = 'running';
      seq.computed = 0;
      running.push(seq);
      add(seq, count, false);
    }
  }
  return { chunks: [...chunks.values()], preempted };
}

/**
 * Turning the scheduler's per-step decisions (chunks) into the engine's StepPlan, and the step's
 * telemetry summary. Called by the scheduler loop only, right after schedule() and after the step.
 */
import type { SamplingParams, ScheduledSequence, StepPlan } from '../engine/engine.js';
import type { HybridCache } from '../cache/index.js';
import type { Sequence } from './request-state.js';

/** One sequence's share of a step, as decided by schedule(). */
export interface ScheduledChunk {
  seq: Sequence;
  /** First position computed (= seq.computed when scheduled). */
  start: number;
  count: number;
  /** Sample a token after the chunk (it reaches the end of the known tokens). */
  sample: boolean;
  wantsPromptLogprobs: boolean;
  /** A one-token step of a sequence past its prompt (for metrics). */
  isDecode: boolean;
}

/**
 * Build the plan: slots and page tables from the cache, the slots to zero (newly admitted), the
 * seqIds the engine must forget. Marks each scheduled sequence as known to the engine.
 */
export function buildStepPlan(stepId: number, chunks: readonly ScheduledChunk[], cache: HybridCache, releasedSeqIds: number[]): StepPlan {
  const sequences: ScheduledSequence[] = chunks.map((c) => {
    const seq = c.seq;
    const request = seq.request.request;
    seq.engineKnown = true;
    // vLLM's min_tokens: eos and stop ids are banned (logit -inf) until minTokens outputs exist.
    const banEnd = seq.request.minTokensSampling !== null && seq.outputCount < (request.minTokens ?? 0);
    return {
      seqId: seq.seqId,
      slot: cache.slotOf(seq.seqId)!,
      pageTable: cache.blockTable(seq.seqId),
      startPosition: c.start,
      tokens: Int32Array.from(seq.tokens.slice(c.start, c.start + c.count)),
      promptLength: seq.promptLength,
      sample: c.sample,
      sampling: completionSampling(banEnd ? seq.request.minTokensSampling! : request.sampling, seq.index),
      promptLogprobs: c.wantsPromptLogprobs ? request.promptLogprobs : null,
    };
  });
  return { stepId, sequences, resetSlots: cache.takePendingResets(), releasedSeqIds };
}

/**
 * n > 1 with a seed: completion i draws from seed + i·φ (completion 0 keeps the request's seed),
 * so the n completions differ from each other yet the whole request stays reproducible.
 */
export function completionSampling(sampling: SamplingParams, index: number): SamplingParams {
  if (index === 0 || sampling.seed === null) return sampling;
  return { ...sampling, seed: (sampling.seed + Math.imul(index, 0x9e3779b1)) >>> 0 };
}

export function summarizeStep(chunks: readonly ScheduledChunk[]): { sequences: number; tokens: number; prefillTokens: number; decodeTokens: number } {
  let tokens = 0;
  let decodeTokens = 0;
  for (const c of chunks) {
    tokens += c.count;
    if (c.isDecode) decodeTokens += c.count;
  }
  return { sequences: chunks.length, tokens, prefillTokens: tokens - decodeTokens, decodeTokens };
}

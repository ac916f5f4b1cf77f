/**
 * Drives an Engine directly through the seam, the way the scheduler would, for the engine golden
 * tests (CPU and CUDA): numbered step plans, greedy sequences with a fixed page layout, chunked
 * prefill into a freshly reset slot, and the golden rows of a prompt's logits.
 */
import { GREEDY, type Engine, type ScheduledSequence, type StepPlan } from '../../src/engine/engine.js';
import type { GoldenCase } from './golden.js';

export class EngineDriver {
  private stepId = 0;

  /** `pagesOf(slot)`: the page table of the sequence living in `slot` (its seqId is the slot). */
  constructor(private readonly pagesOf: (slot: number) => Int32Array) {}

  plan(sequences: ScheduledSequence[], resetSlots: number[] = []): StepPlan {
    return { stepId: this.stepId++, sequences, resetSlots: Int32Array.from(resetSlots), releasedSeqIds: [] };
  }

  /** A greedy sequence that samples once the chunk reaches the end of its prompt. */
  seq(slot: number, startPosition: number, tokens: ArrayLike<number>, promptLength: number, extra: Partial<ScheduledSequence> = {}): ScheduledSequence {
    return {
      seqId: slot,
      slot,
      pageTable: this.pagesOf(slot),
      startPosition,
      tokens: Int32Array.from(tokens),
      promptLength,
      sample: startPosition + tokens.length >= promptLength,
      sampling: GREEDY,
      promptLogprobs: null,
      ...extra,
    };
  }

  /** Feeds the prompt in chunks of `chunk` tokens into a freshly reset slot; returns all logits rows and the sampled token. */
  async prefill(engine: Engine, slot: number, prompt: ArrayLike<number>, chunk: number): Promise<{ logits: Float32Array; token: number }> {
    const V = engine.describe().vocabSize;
    const ids = Int32Array.from(prompt);
    const logits = new Float32Array(ids.length * V);
    let token = -1;
    for (let start = 0; start < ids.length; start += chunk) {
      const part = ids.slice(start, start + chunk);
      const r = await engine.step(this.plan([this.seq(slot, start, part, ids.length, { returnLogits: true })], start === 0 ? [slot] : []));
      logits.set(r.outputs[0]!.logits!, start * V);
      token = r.outputs[0]!.token;
    }
    return { logits, token };
  }
}

/** Rows of `logits` (all prompt positions) at the golden case's stored positions. */
export function goldenRowsOf(logits: Float32Array, c: GoldenCase, V: number): Float32Array {
  const out = new Float32Array(c.logitPositions.length * V);
  c.logitPositions.forEach((pos, k) => out.set(logits.subarray(pos * V, (pos + 1) * V), k * V));
  return out;
}

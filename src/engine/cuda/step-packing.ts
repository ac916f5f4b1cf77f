/**
 * Turns a StepPlan into the one Int32Array the native step reads (layout below, mirrored in
 * kernels/engine/zamba2-engine.h), and records which output rows belong to which sequence.
 * Pure: no addon, no GPU; unit-tested on the CPU (test/unit/engine/cuda/step-packing.test.ts).
 *
 * Packed layout (int32):
 *   header [8]: S, T, O, R, wantLogits, W, 0, 0
 *   tokens[T] positions[T] tokenSeq[T] kvIndex[T] cuSeqlens[S+1] seqSlot[S] blockTables[S*W]
 *   outRows[O] resetSlots[R]
 * kvIndex[t] = page * 16 + offset of token t's position; blockTables rows are padded with -1.
 */
import type { SamplingParams, StepPlan } from '../engine.js';

export const PAGE_TOKENS = 16;
export const PACK_HEADER = 8;

/** Greedy with nothing that needs the full logits row on the host. */
export function isGpuGreedy(p: SamplingParams): boolean {
  return (
    p.temperature <= 0 &&
    p.presencePenalty === 0 &&
    p.frequencyPenalty === 0 &&
    p.repetitionPenalty === 1 &&
    (p.logitBias === null || p.logitBias.size === 0) &&
    (p.logprobs === null || p.logprobs === 0)
  );
}

export interface PackedStep {
  packed: Int32Array;
  /** Output rows of sequence i: [rowStart[i], rowStart[i] + rowCount[i]). */
  rowStart: Int32Array;
  rowCount: Int32Array;
  /** Whether the native step copies all output rows' logits back. */
  wantLogits: boolean;
  tokenCount: number;
}

/** Whether sequence i needs every row of its chunk (prompt logprobs, returned logits). */
function needsAllRows(s: StepPlan['sequences'][number]): boolean {
  return s.promptLogprobs !== null || s.returnLogits === true;
}

/**
 * Packs `plan`. `hasAttention` = the model has attention layers (then every position must be
 * covered by the page table). Throws Error with the sequence at fault on a malformed plan.
 */
export function packStep(plan: StepPlan, hasAttention: boolean): PackedStep {
  const seqs = plan.sequences;
  const S = seqs.length;
  let T = 0;
  let W = 1;
  let O = 0;
  let wantLogits = false;
  const rowStart = new Int32Array(S);
  const rowCount = new Int32Array(S);
  seqs.forEach((s, i) => {
    if (s.tokens.length === 0) throw new Error(`sequence ${s.seqId} has no tokens`);
    T += s.tokens.length;
    const end = s.startPosition + s.tokens.length;
    const pages = Math.ceil(end / PAGE_TOKENS);
    if (hasAttention && s.pageTable.length < pages) {
      throw new Error(`sequence ${s.seqId}: page table covers ${s.pageTable.length * PAGE_TOKENS} positions, needs ${end}`);
    }
    W = Math.max(W, hasAttention ? pages : 1);
    rowStart[i] = O;
    const all = needsAllRows(s);
    rowCount[i] = all ? s.tokens.length : s.sample ? 1 : 0;
    O += rowCount[i]!;
    if (all || (s.sample && !isGpuGreedy(s.sampling))) wantLogits = true;
  });
  const R = plan.resetSlots.length;
  const packed = new Int32Array(PACK_HEADER + 4 * T + (S + 1) + S + S * W + O + R);
  packed.set([S, T, O, R, wantLogits ? 1 : 0, W, 0, 0]);
  let at = PACK_HEADER;
  const tokens = at; at += T;
  const positions = at; at += T;
  const tokenSeq = at; at += T;
  const kvIndex = at; at += T;
  const cu = at; at += S + 1;
  const slot = at; at += S;
  const bt = at; at += S * W;
  const outRows = at; at += O;
  const reset = at;
  let t = 0;
  packed[cu] = 0;
  seqs.forEach((s, i) => {
    for (let j = 0; j < s.tokens.length; j++, t++) {
      const pos = s.startPosition + j;
      packed[tokens + t] = s.tokens[j]!;
      packed[positions + t] = pos;
      packed[tokenSeq + t] = i;
      packed[kvIndex + t] = hasAttention ? s.pageTable[pos >> 4]! * PAGE_TOKENS + (pos & 15) : 0;
    }
    packed[cu + i + 1] = t;
    packed[slot + i] = s.slot;
    const pages = hasAttention ? Math.ceil((s.startPosition + s.tokens.length) / PAGE_TOKENS) : 0;
    for (let k = 0; k < W; k++) packed[bt + i * W + k] = k < pages ? s.pageTable[k]! : -1;
    const n = rowCount[i]!;
    for (let k = 0; k < n; k++) packed[outRows + rowStart[i]! + k] = t - n + k;
  });
  packed.set(plan.resetSlots, reset);
  return { packed, rowStart, rowCount, wantLogits, tokenCount: T };
}

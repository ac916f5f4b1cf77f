/**
 * Turns a StepPlan into the one Int32Array the native step reads (layout below, mirrored in
 * kernels/engine/zamba2-engine.h), and records which output rows belong to which sequence; and
 * packs the per-row parameters of GPU sampling (packSampling, layout at SAMPLE_PARAM_WORDS).
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
 * covered by the page table). `hostSampling` = sampled rows that are not plain greedy are drawn on
 * the host (their logits come back); otherwise they are sampled on the GPU (packSampling) and only
 * prompt logprobs and returned logits need logits rows. Throws Error with the sequence at fault.
 */
export function packStep(plan: StepPlan, hasAttention: boolean, hostSampling = false): PackedStep {
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
    if (all || (hostSampling && s.sample && !isGpuGreedy(s.sampling))) wantLogits = true;
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

// ---- GPU sampling parameters (kernels/include/zamba2-kernels.h: zk_sample_params) ----------------
//   header [4]: N rows, P penalty entries, B bias entries, 0
//   params [N x 24]: float64 temperature, topP, minP, presence, frequency, repetition (words 0-11);
//     int32 logitsRow, topK, seedLo, seedHi, position, nTop, penaltyStart, penaltyCount, biasStart,
//     biasCount, 0, 0 (words 12-23)
//   bias [B x 4]: int32 token, 0, float64 bias     penalties [P x 2]: int32 token, output count
// Every float64 sits at a multiple of 8 bytes (header 16 bytes, rows 96, bias entries 16).

export const SAMPLE_HEADER_WORDS = 4;
export const SAMPLE_PARAM_WORDS = 24;
export const SAMPLE_BIAS_WORDS = 4;
export const SAMPLE_PENALTY_WORDS = 2;
/** Most top logprobs the GPU sampler lists per token. */
export const SAMPLE_MAX_TOP = 20;

/** Tokens a sequence has seen (prompt and output) → occurrences in its output (0 = prompt only). */
export type SeenTokenCounts = ReadonlyMap<number, number>;

export function usesPenalties(p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
}

/** The 64-bit RNG key as two uint32 words, exactly as uniformAt (../cpu/sampler.ts) splits it. */
export function seedWords(key: number): [number, number] {
  return [key >>> 0, Math.floor(key / 4294967296) >>> 0];
}

export interface SamplingInputs {
  /** Key of a sequence without its own seed: engineSeed * 1_000_003 + seqId (as the host path). */
  engineSeed: number;
  /** Seen-token counts of sequence i, including this step's tokens; called only when it has penalties. */
  seen(i: number): SeenTokenCounts;
}

export interface PackedSampling {
  /** The native input (zamba2_engine_stage_sampling); length 0 when no row is sampled on the GPU. */
  words: Int32Array;
  /** GPU sampling row of sequence i, or -1 (not sampled, or plain greedy: the GPU argmax). */
  rowOfSequence: Int32Array;
}

/** Sequences sampled on the GPU: every sampled one that is not plain greedy. */
export function packSampling(plan: StepPlan, step: PackedStep, inputs: SamplingInputs): PackedSampling {
  const seqs = plan.sequences;
  const rowOfSequence = new Int32Array(seqs.length).fill(-1);
  const rows: number[] = [];
  const seen: (SeenTokenCounts | null)[] = [];
  let nBias = 0;
  let nPen = 0;
  seqs.forEach((s, i) => {
    if (!s.sample || isGpuGreedy(s.sampling)) return;
    const n = s.sampling.logprobs;
    if (n !== null && (n < 0 || n > SAMPLE_MAX_TOP)) throw new Error(`sequence ${s.seqId}: logprobs ${n} outside 0..${SAMPLE_MAX_TOP}`);
    rowOfSequence[i] = rows.length;
    rows.push(i);
    const counts = usesPenalties(s.sampling) ? inputs.seen(i) : null;
    seen.push(counts);
    nPen += counts?.size ?? 0;
    nBias += s.sampling.logitBias?.size ?? 0;
  });
  if (rows.length === 0) return { words: new Int32Array(0), rowOfSequence };
  const N = rows.length;
  const words = new Int32Array(SAMPLE_HEADER_WORDS + N * SAMPLE_PARAM_WORDS + nBias * SAMPLE_BIAS_WORDS + nPen * SAMPLE_PENALTY_WORDS);
  const f64 = new Float64Array(words.buffer);
  words.set([N, nPen, nBias, 0]);
  const biasAt = SAMPLE_HEADER_WORDS + N * SAMPLE_PARAM_WORDS;
  const penAt = biasAt + nBias * SAMPLE_BIAS_WORDS;
  let bias = 0;
  let pen = 0;
  rows.forEach((i, r) => {
    const s = seqs[i]!;
    const p = s.sampling;
    const at = SAMPLE_HEADER_WORDS + r * SAMPLE_PARAM_WORDS;
    f64.set([p.temperature, p.topP, p.minP, p.presencePenalty, p.frequencyPenalty, p.repetitionPenalty], at / 2);
    const [lo, hi] = seedWords(p.seed ?? inputs.engineSeed * 1_000_003 + s.seqId);
    const biasStart = bias;
    for (const [id, b] of p.logitBias ?? []) {
      const w = biasAt + bias * SAMPLE_BIAS_WORDS;
      words[w] = id;
      f64[(w + 2) / 2] = b;
      bias++;
    }
    const penStart = pen;
    for (const [id, count] of seen[r] ?? []) {
      words[penAt + pen * SAMPLE_PENALTY_WORDS] = id;
      words[penAt + pen * SAMPLE_PENALTY_WORDS + 1] = count;
      pen++;
    }
    const lastRow = step.rowStart[i]! + step.rowCount[i]! - 1;
    words.set([lastRow, p.topK, lo, hi, s.startPosition + s.tokens.length, p.logprobs ?? 0, penStart, pen - penStart, biasStart, bias - biasStart, 0, 0], at + 12);
  });
  return { words, rowOfSequence };
}

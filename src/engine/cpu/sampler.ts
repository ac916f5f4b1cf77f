/**
 * CPU sampling of one next token from one row of logits, with a request's SamplingParams.
 * Order (as vLLM): logit_bias → repetition penalty (prompt + output) → presence/frequency penalties
 * (output only) → greedy argmax when temperature is 0, else temperature → min-p → top-k → top-p →
 * draw. Reported logprobs are log-softmax of the raw model logits (vLLM's default "raw" logprobs).
 *
 * Randomness: a counter-based generator keyed by (seed, position) so a seeded request samples the
 * same tokens whatever else shares its steps, and a retried step draws the same number again.
 *
 * Ownership: pure functions; the caller owns the logits row (it is not modified) and the history.
 */
import type { SamplingParams, TokenLogprob } from '../engine.js';

/** Tokens the sequence has seen, for penalties: prompt first, then output. */
export interface TokenHistory {
  tokens: ArrayLike<number>;
  /** Count of tokens (a prefix of `tokens`) that are prompt. */
  promptLength: number;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform in [0, 1) from (seed, position): 53 bits from two mixed 32-bit words. */
export function uniformAt(seed: number, position: number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  const a = fmix32(fmix32(lo ^ 0x9e3779b9) ^ Math.imul(position + 1, 0x27d4eb2f) ^ fmix32(hi + 0x165667b1));
  const b = fmix32(a ^ 0x85ebca77 ^ fmix32(position ^ lo));
  return ((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992;
}

/** log-softmax of a logits row. */
export function logSoftmax(logits: ArrayLike<number>): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** Indices of the n largest values, best first (ties: lower id first). */
export function topIndices(values: ArrayLike<number>, n: number): Int32Array {
  const k = Math.min(n, values.length);
  const idx = new Int32Array(k).fill(-1);
  let filled = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (filled === k && !(v > values[idx[k - 1]!]!)) continue;
    let j = filled < k ? filled++ : k - 1;
    while (j > 0 && v > values[idx[j - 1]!]!) {
      idx[j] = idx[j - 1]!;
      j--;
    }
    idx[j] = i;
  }
  return idx;
}

/** The logprob of `tokenId` under `logprobs`, plus the top N (null when n is null). */
export function tokenLogprob(logprobs: Float32Array, tokenId: number, n: number | null): TokenLogprob {
  let top = null;
  if (n !== null && n > 0) {
    const ids = topIndices(logprobs, n);
    top = { tokenIds: ids, logprobs: Float32Array.from(ids, (i) => logprobs[i]!) };
  }
  return { tokenId, logprob: logprobs[tokenId]!, top };
}

/** Applies bias and penalties; returns a new row (the input is left as is). */
export function processLogits(logits: Float32Array, p: SamplingParams, history: TokenHistory): Float32Array {
  const out = logits.slice();
  if (p.logitBias !== null) {
    for (const [id, bias] of p.logitBias) if (id >= 0 && id < out.length) out[id]! += bias;
  }
  const usesOutputCounts = p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
  if (p.repetitionPenalty !== 1 || usesOutputCounts) {
    const seen = new Uint8Array(out.length);
    const outputCounts = new Map<number, number>();
    for (let i = 0; i < history.tokens.length; i++) {
      const t = history.tokens[i]!;
      if (t < 0 || t >= out.length) continue;
      seen[t] = 1;
      if (i >= history.promptLength) outputCounts.set(t, (outputCounts.get(t) ?? 0) + 1);
    }
    if (p.repetitionPenalty !== 1) {
      for (let t = 0; t < out.length; t++) {
        if (seen[t] === 1) out[t] = out[t]! > 0 ? out[t]! / p.repetitionPenalty : out[t]! * p.repetitionPenalty;
      }
    }
    for (const [t, count] of outputCounts) out[t]! -= p.presencePenalty + p.frequencyPenalty * count;
  }
  return out;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** The value at rank `k` (1 = largest) of `values`, by a native numeric sort of a copy. */
function kthLargest(values: Float64Array, k: number): number {
  const sorted = values.slice().sort();
  return sorted[sorted.length - k]!;
}

/**
 * The candidate tokens and their (unnormalized) probabilities after temperature, min-p, top-k and
 * top-p, in token-id order. Each filter becomes a probability threshold (native sorts of doubles,
 * no comparator over the vocabulary), so tokens tied with the last kept one are kept too.
 */
export function candidateDistribution(processed: Float32Array, p: SamplingParams): { ids: Int32Array; probs: Float64Array } {
  const V = processed.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (processed[i]! > max) max = processed[i]!;
  const probs = new Float64Array(V);
  for (let i = 0; i < V; i++) probs[i] = Math.exp((processed[i]! - max) / p.temperature);
  // min-p: the most likely token has probability exp(0) = 1 before normalizing
  let threshold = p.minP > 0 ? p.minP : Number.MIN_VALUE;
  if (p.topK > 0 && p.topK < V) threshold = Math.max(threshold, kthLargest(probs, p.topK));
  if (p.topP < 1) {
    const kept = probs.filter((v) => v >= threshold).sort();
    let total = 0;
    for (const v of kept) total += v;
    let cum = 0;
    for (let i = kept.length - 1; i >= 0; i--) {
      cum += kept[i]!;
      if (cum >= p.topP * total) {
        threshold = Math.max(threshold, kept[i]!);
        break;
      }
    }
  }
  const ids: number[] = [];
  for (let i = 0; i < V; i++) if (probs[i]! >= threshold) ids.push(i);
  return { ids: Int32Array.from(ids), probs: Float64Array.from(ids, (i) => probs[i]!) };
}

/** Picks the next token (greedy when temperature is 0) with the uniform draw `u` in [0, 1). */
export function sampleFromLogits(logits: Float32Array, p: SamplingParams, history: TokenHistory, u: number): number {
  const processed = processLogits(logits, p, history);
  if (p.temperature <= 0) return argmax(processed);
  const { ids, probs } = candidateDistribution(processed, p);
  let total = 0;
  for (const v of probs) total += v;
  let target = u * total;
  for (let i = 0; i < ids.length; i++) {
    target -= probs[i]!;
    if (target < 0) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}

/**
 * The fake engine's "model": a deterministic next-token distribution computed from a rolling hash
 * of a sequence's own history, plus sampling that honours SamplingParams. Everything here is a pure
 * function of its arguments, so a sequence's tokens never depend on what else shares its batch.
 *
 * The distribution is sparse so it stays cheap at a 32k vocabulary: `candidateCount` token ids get
 * logits in [0, 8), every other id gets `BACKGROUND_LOGIT`. Log-softmax is therefore exact and valid
 * (every logprob ≤ 0, top-N sorted), without building a vocab-sized vector per token.
 */
import type { SamplingParams, TokenLogprob } from '../engine.js';

export const BACKGROUND_LOGIT = -12;
const CANDIDATE_LOGIT_SPAN = 8;
const TWO_POW_32 = 4294967296;

/** 32-bit avalanche mix of two words (murmur3 finalizer over a xor-multiply). */
export function mix32(a: number, b: number): number {
  let h = Math.imul((a ^ Math.imul(b, 0x9e3779b1)) >>> 0, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h ^ b, 0x27d4eb2d);
  h ^= h >>> 15;
  return h >>> 0;
}

/** Uniform in [0, 1) from a hash word. */
export function unitInterval(hash: number): number {
  return hash / TWO_POW_32;
}

/** The history hash after consuming `tokenId` at `position`. */
export function advanceHistoryHash(hash: number, tokenId: number, position: number): number {
  return mix32(mix32(hash, tokenId + 1), position + 0x1000);
}

export interface FakeModelConfig {
  vocabSize: number;
  /** Ids below this (unk/bos/eos in Llama-style vocabularies) are never candidates. */
  firstRegularTokenId: number;
  candidateCount: number;
  eosTokenIds: readonly number[];
  /** Chance that eos is the most likely token at a position (decided by the history hash). */
  eosProbability: number;
}

/** Next-token distribution after some history: sparse logits + the exact log-normalizer. */
export interface FakeDistribution {
  /** Candidate ids, sorted by logit descending (ties: lower id first). */
  ids: Int32Array;
  logits: Float32Array;
  /** log(sum(exp(logits over the whole vocabulary))). */
  logNormalizer: number;
}

export function nextTokenDistribution(config: FakeModelConfig, historyHash: number): FakeDistribution {
  const span = config.vocabSize - config.firstRegularTokenId;
  const pairs: Array<{ id: number; logit: number }> = [];
  const used = new Set<number>();
  for (let i = 0, attempt = 0; i < config.candidateCount && attempt < config.candidateCount * 4; attempt++) {
    const id = config.firstRegularTokenId + (mix32(historyHash, 0x100 + attempt) % span);
    if (used.has(id) || config.eosTokenIds.includes(id)) continue;
    used.add(id);
    pairs.push({ id, logit: unitInterval(mix32(historyHash, 0x200 + attempt)) * CANDIDATE_LOGIT_SPAN });
    i++;
  }
  const eosId = config.eosTokenIds[0];
  if (eosId !== undefined && unitInterval(mix32(historyHash, 0xe05)) < config.eosProbability) {
    pairs.push({ id: eosId, logit: CANDIDATE_LOGIT_SPAN + 2 });
  }
  pairs.sort((a, b) => b.logit - a.logit || a.id - b.id);
  let sumExp = (config.vocabSize - pairs.length) * Math.exp(BACKGROUND_LOGIT);
  for (const p of pairs) sumExp += Math.exp(p.logit);
  return {
    ids: Int32Array.from(pairs, (p) => p.id),
    logits: Float32Array.from(pairs, (p) => p.logit),
    logNormalizer: Math.log(sumExp),
  };
}

export function rawLogit(dist: FakeDistribution, tokenId: number): number {
  const i = dist.ids.indexOf(tokenId);
  return i >= 0 ? dist.logits[i]! : BACKGROUND_LOGIT;
}

/** Logprob of `tokenId` under the raw (unprocessed) distribution, plus the top `topN` (null = no list). */
export function tokenLogprob(config: FakeModelConfig, dist: FakeDistribution, tokenId: number, topN: number | null): TokenLogprob {
  const logprob = rawLogit(dist, tokenId) - dist.logNormalizer;
  let top: TokenLogprob['top'] = null;
  if (topN !== null && topN > 0) {
    const n = Math.min(topN, config.vocabSize);
    const tokenIds = new Int32Array(n);
    const logprobs = new Float32Array(n);
    let k = 0;
    for (; k < n && k < dist.ids.length; k++) {
      tokenIds[k] = dist.ids[k]!;
      logprobs[k] = dist.logits[k]! - dist.logNormalizer;
    }
    // Past the candidates every token ties at the background logit: fill in ascending id order.
    for (let id = 0; k < n && id < config.vocabSize; id++) {
      if (dist.ids.includes(id)) continue;
      tokenIds[k] = id;
      logprobs[k] = BACKGROUND_LOGIT - dist.logNormalizer;
      k++;
    }
    top = { tokenIds, logprobs };
  }
  return { tokenId, logprob, top };
}

/** Full-vocabulary raw logits (returnLogits; tests only). */
export function denseLogits(config: FakeModelConfig, dist: FakeDistribution, out: Float32Array, offset: number): void {
  out.fill(BACKGROUND_LOGIT, offset, offset + config.vocabSize);
  for (let i = 0; i < dist.ids.length; i++) out[offset + dist.ids[i]!] = dist.logits[i]!;
}

/**
 * Pick the next token. Processing order: repetition penalty (prompt + output), presence/frequency
 * penalties (output only), logit bias, then greedy argmax or temperature → top-k → top-p → min-p
 * and a draw from `uniform`. Background tokens are only reachable through a logit bias (their
 * raw probability is ~1e-9 each), which keeps sampling O(candidates).
 */
export function sampleToken(
  config: FakeModelConfig,
  dist: FakeDistribution,
  params: SamplingParams,
  history: readonly number[],
  promptLength: number,
  uniform: number,
): number {
  const logits = new Map<number, number>();
  for (let i = 0; i < dist.ids.length; i++) logits.set(dist.ids[i]!, dist.logits[i]!);
  if (params.logitBias) for (const id of params.logitBias.keys()) if (!logits.has(id) && id >= 0 && id < config.vocabSize) logits.set(id, BACKGROUND_LOGIT);

  const penalize = params.repetitionPenalty !== 1 || params.presencePenalty !== 0 || params.frequencyPenalty !== 0;
  if (penalize) {
    const seen = new Set<number>();
    const outputCounts = new Map<number, number>();
    for (let p = 0; p < history.length; p++) {
      const id = history[p]!;
      seen.add(id);
      if (p >= promptLength) outputCounts.set(id, (outputCounts.get(id) ?? 0) + 1);
    }
    for (const [id, logit] of logits) {
      let l = logit;
      if (params.repetitionPenalty !== 1 && seen.has(id)) l = l > 0 ? l / params.repetitionPenalty : l * params.repetitionPenalty;
      const count = outputCounts.get(id) ?? 0;
      if (count > 0) l -= params.frequencyPenalty * count + params.presencePenalty;
      logits.set(id, l);
    }
  }
  if (params.logitBias) for (const [id, bias] of params.logitBias) if (logits.has(id)) logits.set(id, logits.get(id)! + bias);

  const ranked = [...logits].filter(([, l]) => l !== -Infinity && !Number.isNaN(l)).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  if (ranked.length === 0) {
    // Everything likely was banned: the first background id that is not banned.
    for (let id = config.firstRegularTokenId; id < config.vocabSize; id++) if (!logits.has(id)) return id;
    return 0;
  }
  if (params.temperature <= 0) return ranked[0]![0];

  let kept = ranked.map(([id, l]) => ({ id, l: l / params.temperature }));
  if (params.topK > 0) kept = kept.slice(0, params.topK);
  const maxL = kept[0]!.l;
  let probs = kept.map((k) => Math.exp(k.l - maxL));
  let total = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / total);
  if (params.topP < 1) {
    let cum = 0;
    let cut = probs.length;
    for (let i = 0; i < probs.length; i++) {
      cum += probs[i]!;
      if (cum >= params.topP) { cut = i + 1; break; }
    }
    kept = kept.slice(0, cut);
    probs = probs.slice(0, cut);
  }
  if (params.minP > 0) {
    const floor = params.minP * probs[0]!;
    const keep = probs.map((p) => p >= floor);
    kept = kept.filter((_, i) => keep[i]);
    probs = probs.filter((_, i) => keep[i]);
  }
  total = probs.reduce((a, b) => a + b, 0);
  let target = uniform * total;
  for (let i = 0; i < probs.length; i++) {
    target -= probs[i]!;
    if (target < 0) return kept[i]!.id;
  }
  return kept[kept.length - 1]!.id;
}

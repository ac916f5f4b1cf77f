/**
 * Byte sizes a Zamba2 model implies (spec §3.4): per-sequence Mamba2 state (conv + SSM), attention
 * KV per token and per page, parameter count. cache/ and engines size their pools from these; the
 * presets command prints them. Pure functions of Zamba2Dims.
 */
import type { WeightDtype, Zamba2Dims } from './types.js';

/** Tokens per KV page (DESIGN.md: paged in blocks of 16 tokens). */
export const KV_TOKENS_PER_PAGE = 16;

export function dtypeBytes(dtype: WeightDtype): number {
  return dtype === 'float32' ? 4 : 2;
}

export interface SequenceStateSize {
  /** numLayers · (d_conv − 1) · conv_dim: the last 3 pre-conv xBC vectors of every layer. */
  convElements: number;
  /** numLayers · nh · P · N */
  ssmElements: number;
  convBytes: number;
  ssmBytes: number;
  totalBytes: number;
}

/** One sequence's Mamba2 state (constant in sequence length), conv counted with d_conv−1 taps. */
export function sequenceStateSize(dims: Zamba2Dims, stateDtype: WeightDtype): SequenceStateSize {
  const b = dtypeBytes(stateDtype);
  const convElements = dims.numLayers * (dims.mambaDConv - 1) * dims.convDim;
  const ssmElements = dims.numLayers * dims.nMambaHeads * dims.mambaHeadDim * dims.mambaDState;
  return { convElements, ssmElements, convBytes: convElements * b, ssmBytes: ssmElements * b, totalBytes: (convElements + ssmElements) * b };
}

/** K and V elements per token over all hybrid invocations: n_hybrid · 2 · heads · ahd. */
export function kvElementsPerToken(dims: Zamba2Dims): number {
  return dims.hybridLayerIds.length * 2 * dims.numKeyValueHeads * dims.attentionHeadDim;
}

export function kvBytesPerToken(dims: Zamba2Dims, kvDtype: WeightDtype): number {
  return kvElementsPerToken(dims) * dtypeBytes(kvDtype);
}

/** Bytes of one KV page covering `tokensPerPage` tokens of one sequence across all hybrid layers. */
export function kvBytesPerPage(dims: Zamba2Dims, kvDtype: WeightDtype, tokensPerPage = KV_TOKENS_PER_PAGE): number {
  return kvBytesPerToken(dims, kvDtype) * tokensPerPage;
}

/** Parameters with tied embeddings counted once (spec §1.2 totals). */
export function parameterCount(dims: Zamba2Dims): number {
  const H = dims.hiddenSize;
  const H2 = dims.attentionHiddenSize;
  const F = dims.intermediateSize;
  const r = dims.adapterRank;
  const perLayer = H + dims.inProjOut * H + dims.convDim * dims.mambaDConv + (dims.useConvBias ? dims.convDim : 0) +
    3 * dims.nMambaHeads + dims.dInner + H * dims.dInner;
  const perHybrid = H * H + (r * H + 2 * F * r) + (dims.useSharedAttentionAdapter ? 3 * (r * H2 + H2 * r) : 0);
  const perBlock = H2 + 3 * H2 * H2 + H * H2 + H + 2 * F * H + H * F;
  const lmHead = dims.tieWordEmbeddings ? 0 : dims.vocabSize * H;
  return dims.vocabSize * H + H + lmHead + dims.numLayers * perLayer + dims.hybridLayerIds.length * perHybrid + dims.numMemBlocks * perBlock;
}

/** Bytes of the weights stored in `dtype`. */
export function weightBytes(dims: Zamba2Dims, dtype: WeightDtype = dims.dtype): number {
  return parameterCount(dims) * dtypeBytes(dtype);
}

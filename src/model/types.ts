/**
 * What every engine knows about a Zamba2 checkpoint: its dimensions (derived once, in
 * zamba2-config.ts) and its weights by role (mapped from tensor names once, in weights.ts).
 * Facts and formulas: ../shared/zamba2-spec.md §1-3.
 */

export type WeightDtype = 'bfloat16' | 'float16' | 'float32';

export type LayerKind = 'mamba' | 'hybrid';

/** Dimensions and derived values of one Zamba2 model. All engines read these, never config.json. */
export interface Zamba2Dims {
  vocabSize: number;
  /** H */
  hiddenSize: number;
  numLayers: number;
  layerKinds: LayerKind[];
  /** Indices i with layerKinds[i] === 'hybrid', ascending. */
  hybridLayerIds: number[];
  /** For hybrid layer i (by position h in hybridLayerIds): which shared block (h % numMemBlocks). */
  hybridBlockIds: number[];
  numMemBlocks: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** 2H / heads (128, 160, 224 for the presets). */
  attentionHeadDim: number;
  /** 2H */
  attentionHiddenSize: number;
  /** H / heads: the softmax scale is kvChannels^-1/2. */
  kvChannels: number;
  /** MLP width F (4H). */
  intermediateSize: number;
  /** N */
  mambaDState: number;
  /** K (4) */
  mambaDConv: number;
  mambaExpand: number;
  /** G */
  mambaNGroups: number;
  /** nh */
  nMambaHeads: number;
  /** P = d_inner / nh */
  mambaHeadDim: number;
  /** d = expand * H */
  dInner: number;
  /** d + 2GN */
  convDim: number;
  /** 2d + 2GN + nh */
  inProjOut: number;
  useConvBias: boolean;
  useSharedAttentionAdapter: boolean;
  adapterRank: number;
  useMemRope: boolean;
  /** Effective rope theta (after the use_long_context rescale, where it applies). */
  ropeTheta: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  chunkSize: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  tieWordEmbeddings: boolean;
  /** dtype the checkpoint is stored in. */
  dtype: WeightDtype;
}

/** One tensor of a checkpoint, read lazily from a memory-mapped or streamed file. */
export interface TensorView {
  name: string;
  dtype: 'BF16' | 'F16' | 'F32';
  shape: readonly number[];
  /** Raw little-endian bytes as stored (no copy where the reader can avoid it). */
  bytes(): Uint8Array;
  /** Values widened to float32 (a copy). */
  toFloat32(): Float32Array;
}

export interface MambaMixerWeights {
  /** [2d + 2GN + nh, H]: rows z(d) · x(d) · B(GN) · C(GN) · dt(nh) */
  inProj: TensorView;
  /** [d + 2GN, 1, K] */
  conv1dWeight: TensorView;
  /** [d + 2GN] (absent when use_conv_bias is false) */
  conv1dBias: TensorView | null;
  /** [nh] */
  dtBias: TensorView;
  /** [nh]: A = -exp(A_log) */
  aLog: TensorView;
  /** [nh] */
  d: TensorView;
  /** [d]: gated group RMSNorm weight */
  norm: TensorView;
  /** [H, d] */
  outProj: TensorView;
}

export interface LayerWeights {
  kind: LayerKind;
  /** [H] pre-mixer RMSNorm */
  inputNorm: TensorView;
  mixer: MambaMixerWeights;
  /** Hybrid layers only: [H, H] projection of the shared block's output. */
  linear: TensorView | null;
}

/** A low-rank adapter: out += w1 · (w0 · u). */
export interface AdapterWeights {
  /** [r, in] */
  w0: TensorView;
  /** [out, r] */
  w1: TensorView;
}

export interface SharedBlockWeights {
  /** [2H] */
  inputNorm: TensorView;
  /** [2H, 2H] each (heads × ahd = 2H) */
  qProj: TensorView;
  kProj: TensorView;
  vProj: TensorView;
  /** [H, 2H] */
  oProj: TensorView;
  /** [H] */
  preFfNorm: TensorView;
  /** [2F, H]: rows [0, F) gate, [F, 2F) up */
  gateUp: TensorView;
  /** [H, F] */
  down: TensorView;
}

/** Adapters used at hybrid invocation h (the h-th hybrid layer). */
export interface HybridAdapterWeights {
  /** Present when use_shared_attention_adapter (1.2B family). */
  q: AdapterWeights | null;
  k: AdapterWeights | null;
  v: AdapterWeights | null;
  /** MLP gate_up adapter: always present in HF checkpoints. */
  gateUp: AdapterWeights | null;
}

export interface Zamba2Weights {
  /** [V, H] */
  embedTokens: TensorView;
  /** [H] */
  finalNorm: TensorView;
  /** [V, H]: the embedding matrix itself when tied or absent. */
  lmHead: TensorView;
  layers: LayerWeights[];
  /** numMemBlocks entries. */
  sharedBlocks: SharedBlockWeights[];
  /** One entry per hybrid invocation h (same order as dims.hybridLayerIds). */
  hybridAdapters: HybridAdapterWeights[];
}

/** A checkpoint ready for an engine. */
export interface LoadedCheckpoint {
  /** Folder it was loaded from. */
  dir: string;
  dims: Zamba2Dims;
  weights: Zamba2Weights;
  /** Releases mapped files. */
  close(): void;
}

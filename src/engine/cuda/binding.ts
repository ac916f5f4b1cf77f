/**
 * The typed surface of the native addon kernels/build/zamba2_cuda.node (kernels/addon/addon.cc).
 * This is the only file that describes what crosses N-API; keep it in sync with addon.cc.
 * Who calls: load-addon.ts loads it, cuda-engine.ts and weight-upload.ts use it.
 */

/** An opaque engine handle (an N-API External); freed by `destroy` or garbage collection. */
export type NativeEngineHandle = { readonly __zamba2NativeEngine: unique symbol };

/** Model dims and step limits, as the native engine reads them (kernels/engine/zamba2-engine.h). */
export interface NativeEngineConfig {
  vocab: number;
  hidden: number;
  nLayers: number;
  hybridLayerIds: number[];
  hybridBlockIds: number[];
  nMemBlocks: number;
  heads: number;
  headDim: number;
  kvChannels: number;
  ffn: number;
  dState: number;
  nGroups: number;
  nMambaHeads: number;
  mambaHeadDim: number;
  dInner: number;
  adapterRank: number;
  useAttnAdapter: boolean;
  useMlpAdapter: boolean;
  useRope: boolean;
  useConvBias: boolean;
  tieEmbeddings: boolean;
  ropeTheta: number;
  eps: number;
  maxTokens: number;
  maxSeqs: number;
  maxModelLen: number;
  /**
   * CUDA device of the engine (--data-parallel replica index); default 0. createEngine throws
   * ZAMBA2_CREATE when it is not below the visible device count. Every later call on the handle
   * (and the step's worker thread) runs on this device.
   */
  deviceIndex?: number;
}

/** A weight the native engine expects (name scheme: weight-upload.ts). */
export interface NativeWeightSpec {
  name: string;
  numel: number;
  /** Stored as float32 on the GPU (per-head vectors); otherwise bf16. */
  f32: boolean;
}

/** Source dtype codes of setWeight. */
export const NATIVE_DTYPE = { BF16: 0, F16: 1, F32: 2 } as const;

/** What one native step returns, one entry per requested output row (see step-packing.ts). */
export interface NativeStepOutput {
  /** Greedy token of each row (raw logits). */
  argmax: Int32Array;
  maxLogit: Float32Array;
  /** log-sum-exp of each row: logprob(token) = logit(token) - lse. */
  lse: Float32Array;
  /** [rows × vocab] when the packed input asked for logits, else null. */
  logits: Float32Array | null;
  /**
   * GPU sampling, one entry per row of the sampling input (step-packing.ts packSampling; empty
   * without one): the drawn token and its raw logprob (log-softmax of the unmodified logits).
   */
  sampledToken: Int32Array;
  sampledLogprob: Float32Array;
  /** [rows × 20]: the row's top-N raw logprobs, best first (value desc, id asc), then -1 / -Infinity. */
  topIds: Int32Array;
  topLogprobs: Float32Array;
  /** GPU time of the step (events around the whole enqueue). */
  computeMs: number;
}

export interface CudaDeviceInfo {
  deviceCount: number;
  name: string;
  totalBytes: number;
  freeBytes: number;
}

export interface Zamba2CudaAddon {
  /** Throws (code ZAMBA2_NO_CUDA) when no device is visible; name and memory are of `deviceIndex` (default 0). */
  cudaInfo(deviceIndex?: number): CudaDeviceInfo;
  /** Allocates weights and scratch for the config. Throws ZAMBA2_CREATE with the reason. */
  createEngine(config: NativeEngineConfig): NativeEngineHandle;
  weightSpecs(handle: NativeEngineHandle): NativeWeightSpec[];
  /** Synchronous upload of one weight; converts f16/f32 to the stored dtype on the host. */
  setWeight(handle: NativeEngineHandle, name: string, srcDtype: number, bytes: Uint8Array): void;
  /** Random weights with the config's shapes (benchmarks only). */
  fillRandom(handle: NativeEngineHandle, seed: number): void;
  initCache(handle: NativeEngineHandle, slotCount: number, pageCount: number): void;
  copySlot(handle: NativeEngineHandle, src: number, dst: number): void;
  /**
   * Runs one step off the JS thread. `packed` layout: step-packing.ts packStep; `sampling` (optional,
   * null or empty = none): packSampling's words, sampled on the GPU after the forward. Both arrays are
   * copied before the call returns. Throws ZAMBA2_ARGS when `sampling` is not an Int32Array; rejects
   * with code ZAMBA2_STEP (a malformed sampling input included).
   */
  step(handle: NativeEngineHandle, packed: Int32Array, sampling?: Int32Array | null): Promise<NativeStepOutput>;
  deviceBytes(handle: NativeEngineHandle): number;
  destroy(handle: NativeEngineHandle): void;
}

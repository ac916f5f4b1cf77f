/**
 * Entry point of the CUDA engine: loads the native addon (load-addon.ts), opens a checkpoint folder,
 * creates the native engine, uploads the weights once in bf16, and returns the Engine.
 * Ownership: the returned engine owns the GPU memory until close(); the checkpoint's mapped files
 * are released once the weights are on the GPU. Called by the engine factory (src/engine/index.ts),
 * test/gpu/ and benchmarks. Throws CudaUnavailableError (code ZMB_CUDA_ADDON_MISSING or
 * ZMB_CUDA_NO_DEVICE) when the addon or the GPU is missing.
 */
import { basename } from 'node:path';
import { loadCheckpoint } from '../../model/index.js';
import type { Engine } from '../engine.js';
import { CudaEngine, type CudaEngineLogger } from './cuda-engine.js';
import { loadCudaAddon } from './load-addon.js';
import { nativeConfig, nativeWeightMap, uploadWeights } from './weight-upload.js';

export { CudaEngine, cudaKvPageBytes, cudaStateSlotBytes } from './cuda-engine.js';
export type { CudaEngineOptions, CudaEngineLogger } from './cuda-engine.js';
export { CudaUnavailableError, loadCudaAddon } from './load-addon.js';

export interface CreateCudaEngineOptions {
  /** Local HF-layout checkpoint folder. */
  modelDir: string;
  /** Default: the folder name. */
  modelId?: string;
  maxModelLen?: number;
  /** Default 2048. */
  maxTokensPerStep?: number;
  /** Default 256. */
  maxSequencesPerStep?: number;
  cacheBudgetBytes?: number;
  seed?: number;
  /** CUDA device (--data-parallel replica index); default 0. Must be below the visible device count. */
  deviceIndex?: number;
  /** Draw sampled rows on the host over copied-back logits (default: env ZAMBA2_HOST_SAMPLING=1). */
  hostSampling?: boolean;
  logger?: CudaEngineLogger;
}

export async function createCudaEngine(opts: CreateCudaEngineOptions): Promise<Engine> {
  const { addon } = loadCudaAddon();
  const deviceIndex = opts.deviceIndex ?? 0;
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0) throw new Error(`deviceIndex must be a non-negative integer, got ${deviceIndex}`);
  // fail before reading the checkpoint when the device does not exist
  const visible = addon.cudaInfo().deviceCount;
  if (deviceIndex >= visible) throw new Error(`deviceIndex ${deviceIndex} is out of range: ${visible} CUDA device(s) visible (--data-parallel needs one GPU per replica)`);
  const t0 = performance.now();
  const ckpt = await loadCheckpoint(opts.modelDir);
  try {
    const dims = ckpt.dims;
    const maxModelLen = opts.maxModelLen ?? dims.maxPositionEmbeddings;
    const maxTokens = opts.maxTokensPerStep ?? 2048;
    const maxSeqs = opts.maxSequencesPerStep ?? 256;
    const cfg = nativeConfig(dims, ckpt.weights, { maxTokens, maxSeqs, maxModelLen, deviceIndex });
    const handle = addon.createEngine(cfg);
    let uploadedBytes: number;
    try {
      uploadedBytes = uploadWeights(addon, handle, nativeWeightMap(ckpt.weights, cfg));
    } catch (err) {
      addon.destroy(handle);
      throw err;
    }
    const device = addon.cudaInfo(deviceIndex); // free memory after weights and scratch
    const eos = new Set<number>([dims.eosTokenId, ...(ckpt.files.generation?.eosTokenIds ?? [])]);
    const description = CudaEngine.describeFor(dims, device, { ...opts, modelId: opts.modelId ?? basename(ckpt.dir), eosTokenIds: [...eos] }, maxModelLen, maxTokens, maxSeqs);
    opts.logger?.info(
      { device: device.name, deviceIndex, uploadedBytes, deviceBytes: addon.deviceBytes(handle), loadMs: Math.round(performance.now() - t0), ...description },
      'cuda engine ready',
    );
    return new CudaEngine(addon, handle, dims, description, opts.seed ?? 0, opts.hostSampling ?? process.env.ZAMBA2_HOST_SAMPLING === '1');
  } finally {
    ckpt.close();
  }
}

/**
 * Entry point of the CPU engine: loads a checkpoint folder, builds its ONNX step graph and opens the
 * onnxruntime-node session. The checkpoint's mapped files are released once the session holds the
 * weights. Called by the engine factory (src/engine/index.ts) and by tests/benchmarks.
 */
import { basename } from 'node:path';
import { loadCheckpoint } from '../../model/index.js';
import type { Engine } from '../engine.js';
import { CpuEngine, type CpuEngineLogger } from './cpu-engine.js';

export { CpuEngine } from './cpu-engine.js';
export type { CpuEngineOptions, CpuEngineLogger } from './cpu-engine.js';

export interface CreateCpuEngineOptions {
  /** Local HF-layout checkpoint folder. */
  modelDir: string;
  /** Default: the folder name. */
  modelId?: string;
  maxModelLen?: number;
  maxTokensPerStep?: number;
  maxSequencesPerStep?: number;
  /** ORT intra-op threads; default: available cores. */
  threads?: number;
  cacheBudgetBytes?: number;
  seed?: number;
  logger?: CpuEngineLogger;
}

export async function createCpuEngine(opts: CreateCpuEngineOptions): Promise<Engine> {
  const ckpt = await loadCheckpoint(opts.modelDir);
  try {
    const eos = new Set<number>([ckpt.dims.eosTokenId, ...(ckpt.files.generation?.eosTokenIds ?? [])]);
    const { modelDir, ...rest } = opts;
    return await CpuEngine.create(ckpt.dims, ckpt.weights, {
      ...rest,
      modelId: opts.modelId ?? basename(ckpt.dir),
      eosTokenIds: [...eos],
    });
  } finally {
    ckpt.close();
  }
}

/**
 * src/model/ — what a Zamba2 checkpoint is. Ownership: this module owns reading checkpoints (config
 * parsing and every derived dimension, safetensors headers and tensor bytes, tensor-name → role
 * mapping, hub download into the HF cache) and the facts derived from dims alone (state/KV/param
 * bytes, presets, writing random checkpoints). It owns no device memory: engines get TensorViews
 * and read each tensor's bytes when they upload it, then drop them. Nothing here knows about
 * requests, scheduling or HTTP. Engines call loadCheckpoint(); cache sizing calls memory.ts;
 * main/CLI calls resolveModel() to turn --model into a folder.
 */
import { resolve } from 'node:path';
import type { LoadedCheckpoint } from './types.js';
import { parseZamba2Config, type ConfigFormat, type ParseConfigOptions } from './zamba2-config.js';
import { openSafetensorsCheckpoint } from './safetensors.js';
import { mapWeights } from './weights.js';
import { readModelFiles, type ModelFiles } from './model-files.js';

export type * from './types.js';
export { parseZamba2Config, parseZamba2ConfigText, parseWeightDtype, hybridIndexByLayer, blockStorageLayerIds, dimsToHubConfig, Zamba2ConfigError, LONG_CONTEXT_MAX_POSITIONS } from './zamba2-config.js';
export type { ConfigFormat, ParseConfigOptions, ParsedZamba2Config } from './zamba2-config.js';
export { sequenceStateSize, kvElementsPerToken, kvBytesPerToken, kvBytesPerPage, parameterCount, weightBytes, dtypeBytes, KV_TOKENS_PER_PAGE } from './memory.js';
export type { SequenceStateSize } from './memory.js';
export { listPresetNames, loadPreset, PRESETS_DIR } from './presets.js';
export type { ModelPreset } from './presets.js';
export { openSafetensorsCheckpoint, SafetensorsFile, SafetensorsError } from './safetensors.js';
export type { TensorSource } from './safetensors.js';
export { checkpointTensorSpecs, mapWeights, layerPrefix, CheckpointError } from './weights.js';
export type { TensorSpec, TensorInit } from './weights.js';
export { readModelFiles, readGenerationConfig } from './model-files.js';
export type { ModelFiles, GenerationDefaults } from './model-files.js';
export { bytesToFloat32, float32ToBytes } from './float-convert.js';

const WEIGHT_DTYPE_OF = { BF16: 'bfloat16', F16: 'float16', F32: 'float32' } as const;

/** loadCheckpoint's result: the engine contract plus what the loader learnt on the way. */
export interface Zamba2Checkpoint extends LoadedCheckpoint {
  files: ModelFiles;
  format: ConfigFormat;
  useLongContext: boolean;
  /** Tensors in the checkpoint that no role uses (not an error; logged by callers). */
  unusedTensorNames: string[];
  /** The .safetensors files opened. */
  safetensorsFiles: string[];
}

/**
 * Opens a local HF-layout checkpoint folder: parses config.json into dims, validates every
 * safetensors header and maps and shape-checks every tensor. Tensor bytes are not read here: each
 * TensorView reads its bytes on demand until close(). Throws one-line errors (Zamba2ConfigError,
 * SafetensorsError, CheckpointError) naming the file, field or tensor at fault.
 */
export async function loadCheckpoint(dir: string, options: ParseConfigOptions = {}): Promise<Zamba2Checkpoint> {
  const absDir = resolve(dir);
  const files = readModelFiles(absDir);
  const parsed = parseZamba2Config(files.config, { source: files.configPath, ...options });
  const source = openSafetensorsCheckpoint(absDir);
  try {
    const { weights, unusedTensorNames } = mapWeights(parsed.dims, source, absDir);
    const dims = parsed.dtypeStated ? parsed.dims : { ...parsed.dims, dtype: WEIGHT_DTYPE_OF[weights.embedTokens.dtype] };
    return {
      dir: absDir,
      dims,
      weights,
      close: () => source.close(),
      files,
      format: parsed.format,
      useLongContext: parsed.useLongContext,
      unusedTensorNames,
      safetensorsFiles: source.files,
    };
  } catch (err) {
    source.close();
    throw err;
  }
}

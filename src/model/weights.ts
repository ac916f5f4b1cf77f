/**
 * Tensor name ↔ role, HF layout (spec §2.2). One list of every tensor a Zamba2 checkpoint holds
 * (checkpointTensorSpecs: names, shapes, how make-checkpoint initialises them) and the mapping of an
 * opened checkpoint onto Zamba2Weights with every shape checked (mapWeights).
 *
 * Shared blocks: block k is stored once under the first hybrid layer that uses it; copies under
 * later layers of the same block (checkpoints re-saved without tying) are accepted as a fallback
 * when the first is absent and otherwise ignored. Adapter entry h sits in block (h % numMemBlocks)'s
 * storage layer with its global hybrid index h.
 */
import type {
  AdapterWeights, HybridAdapterWeights, LayerWeights, MambaMixerWeights, SharedBlockWeights, TensorView, Zamba2Dims, Zamba2Weights,
} from './types.js';
import { blockStorageLayerIds } from './zamba2-config.js';
import type { TensorSource } from './safetensors.js';

/** How make-checkpoint fills a tensor (spec §3 semantics decide what keeps activations sane). */
export type TensorInit = 'normal' | 'ones' | 'conv-weight' | 'conv-bias' | 'a-log' | 'dt-bias';

export interface TensorSpec {
  name: string;
  shape: number[];
  init: TensorInit;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const EMBED = 'model.embed_tokens.weight';
const FINAL_NORM = 'model.final_layernorm.weight';
const LM_HEAD = 'lm_head.weight';

/** Prefix of layer L's own mixer and input norm. */
export function layerPrefix(dims: Zamba2Dims, layer: number): string {
  return dims.layerKinds[layer] === 'hybrid' ? `model.layers.${layer}.mamba_decoder.` : `model.layers.${layer}.`;
}

function sharedPrefix(layer: number): string {
  return `model.layers.${layer}.shared_transformer.`;
}

function mixerSpecs(dims: Zamba2Dims, p: string): TensorSpec[] {
  const { hiddenSize: H, dInner: d, convDim, nMambaHeads: nh } = dims;
  const specs: TensorSpec[] = [
    { name: `${p}input_layernorm.weight`, shape: [H], init: 'ones' },
    { name: `${p}mamba.in_proj.weight`, shape: [dims.inProjOut, H], init: 'normal' },
    { name: `${p}mamba.conv1d.weight`, shape: [convDim, 1, dims.mambaDConv], init: 'conv-weight' },
  ];
  if (dims.useConvBias) specs.push({ name: `${p}mamba.conv1d.bias`, shape: [convDim], init: 'conv-bias' });
  specs.push(
    { name: `${p}mamba.dt_bias`, shape: [nh], init: 'dt-bias' },
    { name: `${p}mamba.A_log`, shape: [nh], init: 'a-log' },
    { name: `${p}mamba.D`, shape: [nh], init: 'ones' },
    { name: `${p}mamba.norm.weight`, shape: [d], init: 'ones' },
    { name: `${p}mamba.out_proj.weight`, shape: [H, d], init: 'normal' },
  );
  return specs;
}

/** Suffixes (after `shared_transformer.`) and shapes of one shared block's own tensors. */
function blockSuffixes(dims: Zamba2Dims): Array<[keyof SharedBlockWeights, string, number[], TensorInit]> {
  const H = dims.hiddenSize;
  const H2 = dims.attentionHiddenSize;
  const F = dims.intermediateSize;
  const qkvOut = dims.numAttentionHeads * dims.attentionHeadDim;
  return [
    ['inputNorm', 'input_layernorm.weight', [H2], 'ones'],
    ['qProj', 'self_attn.q_proj.weight', [qkvOut, H2], 'normal'],
    ['kProj', 'self_attn.k_proj.weight', [dims.numKeyValueHeads * dims.attentionHeadDim, H2], 'normal'],
    ['vProj', 'self_attn.v_proj.weight', [dims.numKeyValueHeads * dims.attentionHeadDim, H2], 'normal'],
    ['oProj', 'self_attn.o_proj.weight', [H, qkvOut], 'normal'],
    ['preFfNorm', 'pre_ff_layernorm.weight', [H], 'ones'],
    ['gateUp', 'feed_forward.gate_up_proj.weight', [2 * F, H], 'normal'],
    ['down', 'feed_forward.down_proj.weight', [H, F], 'normal'],
  ];
}

/** Suffixes and shapes of the adapters of hybrid invocation h: [role, suffix of .0, shape .0, shape .1]. */
function adapterSuffixes(dims: Zamba2Dims, h: number): Array<[keyof HybridAdapterWeights, string, number[], number[]]> {
  const r = dims.adapterRank;
  const H = dims.hiddenSize;
  const H2 = dims.attentionHiddenSize;
  const out: Array<[keyof HybridAdapterWeights, string, number[], number[]]> = [];
  if (dims.useSharedAttentionAdapter) {
    for (const x of ['q', 'k', 'v'] as const) out.push([x, `self_attn.linear_${x}_adapter_list.${h}.`, [r, H2], [H2, r]]);
  }
  out.push(['gateUp', `feed_forward.gate_up_proj_adapter_list.${h}.`, [r, H], [2 * dims.intermediateSize, r]]);
  return out;
}

/** Every tensor of an HF-layout checkpoint with tied lm_head, in the order make-checkpoint writes them. */
export function checkpointTensorSpecs(dims: Zamba2Dims): TensorSpec[] {
  const specs: TensorSpec[] = [{ name: EMBED, shape: [dims.vocabSize, dims.hiddenSize], init: 'normal' }];
  const storage = blockStorageLayerIds(dims);
  for (let layer = 0; layer < dims.numLayers; layer++) {
    specs.push(...mixerSpecs(dims, layerPrefix(dims, layer)));
    if (dims.layerKinds[layer] !== 'hybrid') continue;
    specs.push({ name: `model.layers.${layer}.linear.weight`, shape: [dims.hiddenSize, dims.hiddenSize], init: 'normal' });
    const block = storage.indexOf(layer);
    if (block < 0) continue;
    const p = sharedPrefix(layer);
    for (const [, suffix, shape, init] of blockSuffixes(dims)) specs.push({ name: p + suffix, shape, init });
    dims.hybridBlockIds.forEach((k, h) => {
      if (k !== block) return;
      for (const [, suffix, s0, s1] of adapterSuffixes(dims, h)) {
        specs.push({ name: `${p}${suffix}0.weight`, shape: s0, init: 'normal' }, { name: `${p}${suffix}1.weight`, shape: s1, init: 'normal' });
      }
    });
  }
  specs.push({ name: FINAL_NORM, shape: [dims.hiddenSize], init: 'ones' });
  if (!dims.tieWordEmbeddings) specs.push({ name: LM_HEAD, shape: [dims.vocabSize, dims.hiddenSize], init: 'normal' });
  return specs;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export interface MappedWeights {
  weights: Zamba2Weights;
  /** Tensors present in the checkpoint that no role uses (duplicated shared-block copies excluded). */
  unusedTensorNames: string[];
}

/**
 * Maps the checkpoint's tensors onto roles, checking every shape. `where` prefixes error messages
 * (the checkpoint folder). Throws CheckpointError: one line naming the tensor and its expected shape.
 */
export function mapWeights(dims: Zamba2Dims, source: TensorSource, where: string): MappedWeights {
  const used = new Set<string>();
  const check = (view: TensorView, shape: readonly number[]): TensorView => {
    if (view.shape.length !== shape.length || view.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`${where}: tensor "${view.name}" has shape ${fmtShape(view.shape)}, expected ${fmtShape(shape)}`);
    }
    used.add(view.name);
    return view;
  };
  /** First present name among candidates (the canonical one first). */
  const take = (candidates: readonly string[], shape: readonly number[]): TensorView => {
    for (const name of candidates) {
      const view = source.get(name);
      if (view) return check(view, shape);
    }
    throw new CheckpointError(`${where}: missing tensor "${candidates[0]}" (expected shape ${fmtShape(shape)})`);
  };
  const H = dims.hiddenSize;
  const names = source.names();
  if (!names.some((n) => n.startsWith('model.layers.'))) {
    const legacy = names.find((n) => n.startsWith('model.mamba_layers.') || n.startsWith('decoder.layers.'));
    if (legacy) {
      throw new CheckpointError(`${where}: weights are in a pre-transformers Zyphra layout (e.g. "${legacy}"); only the transformers layout (model.layers.N.…) is supported: load and re-save the model with transformers`);
    }
  }

  const embedTokens = take([EMBED], [dims.vocabSize, H]);
  const finalNorm = take([FINAL_NORM], [H]);
  const lmHeadView = source.get(LM_HEAD);
  const lmHead = lmHeadView ? check(lmHeadView, [dims.vocabSize, H]) : embedTokens;
  if (!lmHeadView && !dims.tieWordEmbeddings) throw new CheckpointError(`${where}: missing tensor "${LM_HEAD}" (expected shape ${fmtShape([dims.vocabSize, H])}; tie_word_embeddings is false)`);

  const layers: LayerWeights[] = [];
  for (let layer = 0; layer < dims.numLayers; layer++) {
    const specs = new Map(mixerSpecs(dims, layerPrefix(dims, layer)).map((s) => [s.name.slice(layerPrefix(dims, layer).length), s]));
    const get = (suffix: string): TensorView => {
      const s = specs.get(suffix)!;
      return take([s.name], s.shape);
    };
    const mixer: MambaMixerWeights = {
      inProj: get('mamba.in_proj.weight'),
      conv1dWeight: get('mamba.conv1d.weight'),
      conv1dBias: dims.useConvBias ? get('mamba.conv1d.bias') : null,
      dtBias: get('mamba.dt_bias'),
      aLog: get('mamba.A_log'),
      d: get('mamba.D'),
      norm: get('mamba.norm.weight'),
      outProj: get('mamba.out_proj.weight'),
    };
    const kind = dims.layerKinds[layer]!;
    layers.push({
      kind,
      inputNorm: get('input_layernorm.weight'),
      mixer,
      linear: kind === 'hybrid' ? take([`model.layers.${layer}.linear.weight`], [H, H]) : null,
    });
  }

  const storage = blockStorageLayerIds(dims);
  /** Storage layer of block k first, then every other hybrid layer of the same block. */
  const blockLayers = (k: number): number[] => [storage[k]!, ...dims.hybridLayerIds.filter((l, h) => dims.hybridBlockIds[h] === k && l !== storage[k])];
  const sharedBlocks: SharedBlockWeights[] = [];
  for (let k = 0; k < dims.numMemBlocks; k++) {
    const block = {} as Record<keyof SharedBlockWeights, TensorView>;
    for (const [role, suffix, shape] of blockSuffixes(dims)) block[role] = take(blockLayers(k).map((l) => sharedPrefix(l) + suffix), shape);
    sharedBlocks.push(block);
  }

  const hybridAdapters: HybridAdapterWeights[] = dims.hybridLayerIds.map((_, h) => {
    const adapters: HybridAdapterWeights = { q: null, k: null, v: null, gateUp: null };
    const layersOfBlock = blockLayers(dims.hybridBlockIds[h]!);
    for (const [role, suffix, s0, s1] of adapterSuffixes(dims, h)) {
      const pair: AdapterWeights = {
        w0: take(layersOfBlock.map((l) => `${sharedPrefix(l)}${suffix}0.weight`), s0),
        w1: take(layersOfBlock.map((l) => `${sharedPrefix(l)}${suffix}1.weight`), s1),
      };
      adapters[role] = pair;
    }
    return adapters;
  });

  const unusedTensorNames = names.filter((n) => !used.has(n) && !/^model\.layers\.\d+\.shared_transformer\./.test(n)).sort();
  return { weights: { embedTokens, finalNorm, lmHead, layers, sharedBlocks, hybridAdapters }, unusedTensorNames };
}

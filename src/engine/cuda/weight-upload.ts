/**
 * Maps a checkpoint's weights (by role, src/model/types.ts) to the native engine's weight names
 * and uploads each once (bf16 on the GPU; per-head vectors as f32). Also derives the native config
 * from the dims. Who calls: cuda-engine.ts at creation. Reads each tensor's bytes once; mutates
 * only GPU memory through the addon.
 */
import type { TensorView, Zamba2Dims, Zamba2Weights } from '../../model/types.js';
import { NATIVE_DTYPE, type NativeEngineConfig, type NativeEngineHandle, type Zamba2CudaAddon } from './binding.js';

export interface NativeLimits {
  maxTokens: number;
  maxSeqs: number;
  maxModelLen: number;
  /** CUDA device (--data-parallel replica); default 0. */
  deviceIndex?: number;
}

function adapterFlags(weights: Zamba2Weights): { attn: boolean; mlp: boolean } {
  const ad = weights.hybridAdapters;
  const attn = ad.length > 0 && ad.every((a) => a.q !== null && a.k !== null && a.v !== null);
  const mlp = ad.length > 0 && ad.every((a) => a.gateUp !== null);
  const anyAttn = ad.some((a) => a.q !== null || a.k !== null || a.v !== null);
  const anyMlp = ad.some((a) => a.gateUp !== null);
  if (anyAttn !== attn || anyMlp !== mlp) {
    throw new Error('checkpoint has adapters for some hybrid layers but not others; the CUDA engine needs all or none');
  }
  return { attn, mlp };
}

/** HF ties lm_head to the embedding whenever the config says so, even if lm_head.weight is stored. */
export function isTied(dims: Zamba2Dims, weights: Zamba2Weights): boolean {
  return dims.tieWordEmbeddings || weights.lmHead === weights.embedTokens || weights.lmHead.name === weights.embedTokens.name;
}

export function nativeConfig(dims: Zamba2Dims, weights: Zamba2Weights, limits: NativeLimits): NativeEngineConfig {
  const flags = adapterFlags(weights);
  return {
    vocab: dims.vocabSize,
    hidden: dims.hiddenSize,
    nLayers: dims.numLayers,
    hybridLayerIds: [...dims.hybridLayerIds],
    hybridBlockIds: [...dims.hybridBlockIds],
    nMemBlocks: dims.numMemBlocks,
    heads: dims.numAttentionHeads,
    headDim: dims.attentionHeadDim,
    kvChannels: dims.kvChannels,
    ffn: dims.intermediateSize,
    dState: dims.mambaDState,
    nGroups: dims.mambaNGroups,
    nMambaHeads: dims.nMambaHeads,
    mambaHeadDim: dims.mambaHeadDim,
    dInner: dims.dInner,
    adapterRank: dims.adapterRank,
    useAttnAdapter: flags.attn,
    useMlpAdapter: flags.mlp,
    useRope: dims.useMemRope,
    useConvBias: weights.layers.every((l) => l.mixer.conv1dBias !== null),
    tieEmbeddings: isTied(dims, weights),
    ropeTheta: dims.ropeTheta,
    eps: dims.rmsNormEps,
    maxTokens: limits.maxTokens,
    maxSeqs: limits.maxSeqs,
    maxModelLen: limits.maxModelLen,
    deviceIndex: limits.deviceIndex ?? 0,
  };
}

/** Native name → tensor, for every weight the native engine expects. */
export function nativeWeightMap(weights: Zamba2Weights, cfg: NativeEngineConfig): Map<string, TensorView> {
  const m = new Map<string, TensorView>();
  m.set('embed', weights.embedTokens);
  m.set('final_norm', weights.finalNorm);
  if (!cfg.tieEmbeddings) m.set('lm_head', weights.lmHead);
  weights.layers.forEach((l, L) => {
    const p = `layers.${L}.`;
    m.set(p + 'input_norm', l.inputNorm);
    m.set(p + 'in_proj', l.mixer.inProj);
    m.set(p + 'conv_w', l.mixer.conv1dWeight);
    if (cfg.useConvBias && l.mixer.conv1dBias !== null) m.set(p + 'conv_b', l.mixer.conv1dBias);
    m.set(p + 'dt_bias', l.mixer.dtBias);
    m.set(p + 'a_log', l.mixer.aLog);
    m.set(p + 'd', l.mixer.d);
    m.set(p + 'norm', l.mixer.norm);
    m.set(p + 'out_proj', l.mixer.outProj);
    if (l.linear !== null) m.set(p + 'linear', l.linear);
  });
  weights.sharedBlocks.forEach((b, k) => {
    const p = `blocks.${k}.`;
    m.set(p + 'input_norm', b.inputNorm);
    m.set(p + 'q', b.qProj);
    m.set(p + 'k', b.kProj);
    m.set(p + 'v', b.vProj);
    m.set(p + 'o', b.oProj);
    m.set(p + 'pre_ff_norm', b.preFfNorm);
    m.set(p + 'gate_up', b.gateUp);
    m.set(p + 'down', b.down);
  });
  weights.hybridAdapters.forEach((a, h) => {
    const p = `adapters.${h}.`;
    for (const [key, ad] of [['q', a.q], ['k', a.k], ['v', a.v], ['gate_up', a.gateUp]] as const) {
      if (ad === null) continue;
      if (key !== 'gate_up' && !cfg.useAttnAdapter) continue;
      m.set(`${p}${key}.w0`, ad.w0);
      m.set(`${p}${key}.w1`, ad.w1);
    }
  });
  return m;
}

/** Uploads every expected weight; throws naming the first missing or mis-shaped one. Returns bytes read. */
export function uploadWeights(addon: Zamba2CudaAddon, handle: NativeEngineHandle, byName: Map<string, TensorView>): number {
  let bytes = 0;
  for (const spec of addon.weightSpecs(handle)) {
    const t = byName.get(spec.name);
    if (t === undefined) throw new Error(`CUDA engine: checkpoint has no tensor for native weight ${spec.name}`);
    const data = t.bytes();
    addon.setWeight(handle, spec.name, NATIVE_DTYPE[t.dtype], data);
    bytes += data.byteLength;
  }
  return bytes;
}

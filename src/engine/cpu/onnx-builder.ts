/**
 * Builds the Zamba2 step graph (one chunk of T tokens for a batch of B sequences, continuing from
 * carried state) as an ONNX model, in TypeScript, from a loaded checkpoint. Formulas:
 * ../../../shared/zamba2-spec.md §3-4 (the repo copy lives at /work/shared/zamba2-spec.md).
 *
 * Graph contract (all float32 unless noted; B, T, P = past length are dynamic):
 *   inputs   input_ids int64 [B,T]
 *            rope_cos, rope_sin [B,T,ahd]          (only when use_mem_rope; computed in float64 by the engine)
 *            attn_mask [B,1,T,P+T]                 (additive: 0 = visible, -inf = hidden; only with hybrid layers)
 *            logits_rows int64 [R]                 (rows b·T + t of the chunk whose logits are wanted)
 *            conv_state.{l} [B,3,convDim], ssm_state.{l} [B,nh,headDim,N]   for every layer l
 *            past_key.{a}, past_value.{a} [B,P,2H] for every hybrid invocation a (post-rope keys)
 *   outputs  logits [R,V]; conv_state_out.{l}; ssm_state_out.{l}; key.{a}, value.{a} [B,T,2H]
 * One graph serves every (B, T, P): the SSM over the chunk is the SSD matrix form (spec §4.1 with a
 * single chunk), so T = 1 is the decode recurrence and any T continues exactly from the carried state.
 *
 * Activations run as 2-D [M = B·T, features] between layers so every projection is a Gemm with
 * transB = 1 on the checkpoint's [out, in] weights (no transposed copies).
 */
import type { Zamba2Dims, Zamba2Weights, TensorView, AdapterWeights } from '../../model/types.js';
import { OnnxGraph, type WeightSink } from './onnx-graph.js';

/** Names of the graph's inputs and outputs, shared with the engine that feeds it. */
export const GraphNames = {
  inputIds: 'input_ids',
  ropeCos: 'rope_cos',
  ropeSin: 'rope_sin',
  attnMask: 'attn_mask',
  logitsRows: 'logits_rows',
  logits: 'logits',
  convState: (l: number) => `conv_state.${l}`,
  ssmState: (l: number) => `ssm_state.${l}`,
  convStateOut: (l: number) => `conv_state_out.${l}`,
  ssmStateOut: (l: number) => `ssm_state_out.${l}`,
  pastKey: (a: number) => `past_key.${a}`,
  pastValue: (a: number) => `past_value.${a}`,
  newKey: (a: number) => `key.${a}`,
  newValue: (a: number) => `value.${a}`,
} as const;

/** Conv taps carried between chunks (d_conv − 1). */
export function convTapsOf(dims: Zamba2Dims): number {
  return dims.mambaDConv - 1;
}

const INT64_MAX = Number.MAX_SAFE_INTEGER;

class StepGraphBuilder {
  private readonly g: OnnxGraph;
  private readonly d: Zamba2Dims;
  /** int64 [2] = [B, T] */
  private shapeBT = '';
  /** float [T, T]: 0 where j <= i, -inf above the diagonal */
  private causalTT = '';

  constructor(
    dims: Zamba2Dims,
    private readonly w: Zamba2Weights,
    sink: WeightSink,
  ) {
    this.d = dims;
    this.g = new OnnxGraph(sink);
  }

  private weight(name: string, t: TensorView, expectShape: readonly number[]): string {
    if (t.shape.length !== expectShape.length || t.shape.some((s, i) => s !== expectShape[i])) {
      throw new Error(`weight ${t.name}: shape [${t.shape.join(',')}] where [${expectShape.join(',')}] was expected`);
    }
    return this.g.weight(name, t.toFloat32(), expectShape);
  }

  /** [B,T] ++ tail as an int64 shape tensor. */
  private shapeBTWith(tail: readonly number[]): string {
    return this.g.node('Concat', [this.shapeBT, this.g.constInt64(tail)], { axis: 0 });
  }

  private reshape(x: string, shape: string): string {
    return this.g.node('Reshape', [x, shape]);
  }

  private gemmT(x: string, w: string): string {
    return this.g.node('Gemm', [x, w], { transB: 1 });
  }

  private silu(x: string): string {
    return this.g.node('Mul', [x, this.g.node('Sigmoid', [x])]);
  }

  /** x / sqrt(mean(x², last axis) + eps), then × weight when given. */
  private rmsNorm(x: string, weight: string | null, eps: number): string {
    const ms = this.g.node('ReduceMean', [this.g.node('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const r = this.g.node('Sqrt', [this.g.node('Add', [ms, this.g.constFloat([eps], [])])]);
    const y = this.g.node('Div', [x, r]);
    return weight === null ? y : this.g.node('Mul', [y, weight]);
  }

  private adapter(u: string, a: AdapterWeights | null, prefix: string, inDim: number, outDim: number): string | null {
    if (a === null) return null;
    const r = this.d.adapterRank;
    const w0 = this.weight(`${prefix}.0`, a.w0, [r, inDim]);
    const w1 = this.weight(`${prefix}.1`, a.w1, [outDim, r]);
    return this.gemmT(this.gemmT(u, w0), w1);
  }

  private projectWithAdapter(u: string, w: string, a: string | null): string {
    const y = this.gemmT(u, w);
    return a === null ? y : this.g.node('Add', [y, a]);
  }

  build(): Uint8Array {
    const { g, d } = this;
    const H = d.hiddenSize;
    const ids = g.input(GraphNames.inputIds, 'int64', ['batch', 'chunk']);
    this.shapeBT = g.node('Shape', [ids]);

    // Causal mask over the chunk, shared by every mamba layer: j <= i.
    const T = g.node('Gather', [this.shapeBT, g.constInt64([1], [])], { axis: 0 });
    const range = g.node('Range', [g.constInt64([0], []), T, g.constInt64([1], [])]);
    const rowI = g.node('Unsqueeze', [range, g.constInt64([1])]); // [T,1]
    const colJ = g.node('Unsqueeze', [range, g.constInt64([0])]); // [1,T]
    const visible = g.node('LessOrEqual', [colJ, rowI]);
    this.causalTT = g.node('Where', [visible, g.constFloat([0], []), g.constFloat([-Infinity], [])]);

    const embed = this.weight('embed_tokens', this.w.embedTokens, [d.vocabSize, H]);
    const e3 = g.node('Gather', [embed, ids], { axis: 0 }); // [B,T,H]
    const e2 = this.reshape(e3, g.constInt64([-1, H])); // [M,H]

    let ropeCos: string | null = null;
    let ropeSin: string | null = null;
    let attnMask: string | null = null;
    if (d.hybridLayerIds.length > 0) {
      if (d.useMemRope) {
        const ahd = d.attentionHeadDim;
        // [B,T,ahd] → [B,T,1,ahd] to broadcast over heads
        ropeCos = g.node('Unsqueeze', [g.input(GraphNames.ropeCos, 'float32', ['batch', 'chunk', ahd]), g.constInt64([2])]);
        ropeSin = g.node('Unsqueeze', [g.input(GraphNames.ropeSin, 'float32', ['batch', 'chunk', ahd]), g.constInt64([2])]);
      }
      attnMask = g.input(GraphNames.attnMask, 'float32', ['batch', 1, 'chunk', 'total']);
    }

    let x = e2; // residual stream [M,H]
    for (let l = 0; l < d.numLayers; l++) {
      const layer = this.w.layers[l];
      if (layer === undefined) throw new Error(`checkpoint has no layer ${l}`);
      let mixerIn = x;
      const h = d.hybridLayerIds.indexOf(l);
      if (h >= 0) {
        const blockOut = this.sharedBlock(h, x, e2, ropeCos, ropeSin, attnMask!);
        if (layer.linear === null) throw new Error(`hybrid layer ${l} has no linear`);
        const tr = this.gemmT(blockOut, this.weight(`layers.${l}.linear`, layer.linear, [H, H]));
        mixerIn = g.node('Add', [x, tr]);
      }
      const normW = this.weight(`layers.${l}.input_norm`, layer.inputNorm, [H]);
      const u = this.rmsNorm(mixerIn, normW, d.rmsNormEps);
      x = g.node('Add', [x, this.mamba(l, u)]);
    }

    const finalW = this.weight('final_norm', this.w.finalNorm, [H]);
    const xn = this.rmsNorm(x, finalW, d.rmsNormEps);
    const tied = this.w.lmHead === this.w.embedTokens || this.w.lmHead.name === this.w.embedTokens.name;
    const lmHead = tied ? embed : this.weight('lm_head', this.w.lmHead, [d.vocabSize, H]);
    // Only the rows the engine asks for reach the lm_head (usually each sequence's last token).
    const rows = g.input(GraphNames.logitsRows, 'int64', ['rows']);
    g.node('Gemm', [g.node('Gather', [xn, rows], { axis: 0 }), lmHead], { transB: 1 }, GraphNames.logits);
    g.output(GraphNames.logits, 'float32', ['rows', d.vocabSize]);
    return g.encode('zamba2_step');
  }

  /** Shared attention + MLP block k at hybrid invocation h. Returns [M,H] (no residuals inside). */
  private sharedBlock(h: number, x: string, e2: string, ropeCos: string | null, ropeSin: string | null, attnMask: string): string {
    const { g, d } = this;
    const H = d.hiddenSize;
    const H2 = d.attentionHiddenSize;
    const heads = d.numAttentionHeads;
    const ahd = d.attentionHeadDim;
    const F = d.intermediateSize;
    const k = d.hybridBlockIds[h]!;
    const blk = this.w.sharedBlocks[k];
    const ad = this.w.hybridAdapters[h];
    if (blk === undefined || ad === undefined) throw new Error(`checkpoint lacks shared block ${k} or adapters of invocation ${h}`);
    if (d.numKeyValueHeads !== heads) throw new Error('Zamba2 shared attention without GQA expected (num_key_value_heads = heads)');
    // Shared tensors are added once per block (first use), adapters once per invocation.
    const wName = (s: string) => `block${k}.${s}`;
    const firstUse = d.hybridBlockIds.indexOf(k) === h;
    const bw = (s: string, t: TensorView, shape: number[]) => (firstUse ? this.weight(wName(s), t, shape) : wName(s));

    const u = this.rmsNorm(g.node('Concat', [x, e2], { axis: 1 }), bw('input_norm', blk.inputNorm, [H2]), d.rmsNormEps); // [M,2H]
    const q = this.projectWithAdapter(u, bw('q', blk.qProj, [H2, H2]), this.adapter(u, ad.q, `inv${h}.q_adapter`, H2, H2));
    const kk = this.projectWithAdapter(u, bw('k', blk.kProj, [H2, H2]), this.adapter(u, ad.k, `inv${h}.k_adapter`, H2, H2));
    const v = this.projectWithAdapter(u, bw('v', blk.vProj, [H2, H2]), this.adapter(u, ad.v, `inv${h}.v_adapter`, H2, H2));

    const headsShape = this.shapeBTWith([heads, ahd]);
    let q4 = this.reshape(q, headsShape); // [B,T,heads,ahd]
    let k4 = this.reshape(kk, headsShape);
    if (ropeCos !== null && ropeSin !== null) {
      q4 = this.rope(q4, ropeCos, ropeSin);
      k4 = this.rope(k4, ropeCos, ropeSin);
    }
    const bt2H = this.shapeBTWith([H2]);
    const kNew = g.node('Reshape', [k4, bt2H], {}, GraphNames.newKey(h)); // [B,T,2H]
    const vNew = g.node('Reshape', [v, bt2H], {}, GraphNames.newValue(h));
    g.output(GraphNames.newKey(h), 'float32', ['batch', 'chunk', H2]);
    g.output(GraphNames.newValue(h), 'float32', ['batch', 'chunk', H2]);

    const pastK = g.input(GraphNames.pastKey(h), 'float32', ['batch', 'past', H2]);
    const pastV = g.input(GraphNames.pastValue(h), 'float32', ['batch', 'past', H2]);
    const perHead = g.constInt64([0, -1, heads, ahd]);
    const kAll = this.reshape(g.node('Concat', [pastK, kNew], { axis: 1 }), perHead); // [B,S,heads,ahd]
    const vAll = this.reshape(g.node('Concat', [pastV, vNew], { axis: 1 }), perHead);
    const kT = g.node('Transpose', [kAll], { perm: [0, 2, 3, 1] }); // [B,heads,ahd,S]
    const vH = g.node('Transpose', [vAll], { perm: [0, 2, 1, 3] }); // [B,heads,S,ahd]
    const qH = g.node('Transpose', [q4], { perm: [0, 2, 1, 3] }); // [B,heads,T,ahd]
    const scale = g.constFloat([1 / Math.sqrt(d.kvChannels)], []);
    const scores = g.node('Add', [g.node('Mul', [g.node('MatMul', [qH, kT]), scale]), attnMask]); // [B,heads,T,S]
    const probs = g.node('Softmax', [scores], { axis: -1 });
    const o = g.node('Transpose', [g.node('MatMul', [probs, vH])], { perm: [0, 2, 1, 3] }); // [B,T,heads,ahd]
    const attnOut = this.gemmT(this.reshape(o, g.constInt64([-1, H2])), bw('o', blk.oProj, [H, H2])); // [M,H]

    const vn = this.rmsNorm(attnOut, bw('pre_ff_norm', blk.preFfNorm, [H]), d.rmsNormEps);
    const gu = this.projectWithAdapter(vn, bw('gate_up', blk.gateUp, [2 * F, H]), this.adapter(vn, ad.gateUp, `inv${h}.gate_up_adapter`, H, 2 * F));
    const [gate, up] = g.nodeN('Split', [gu, g.constInt64([F, F])], 2, { axis: 1 });
    // exact GELU: 0.5·x·(1 + erf(x/√2))
    const erf = g.node('Erf', [g.node('Mul', [gate!, g.constFloat([Math.SQRT1_2], [])])]);
    const gelu = g.node('Mul', [g.node('Mul', [gate!, g.constFloat([0.5], [])]), g.node('Add', [erf, g.constFloat([1], [])])]);
    return this.gemmT(g.node('Mul', [gelu, up!]), bw('down', blk.down, [H, F]));
  }

  /** NeoX rotate-half rope over the full head dim; x [B,T,heads,ahd], cos/sin [B,T,1,ahd]. */
  private rope(x: string, cos: string, sin: string): string {
    const { g } = this;
    const half = this.d.attentionHeadDim / 2;
    const [x1, x2] = g.nodeN('Split', [x, g.constInt64([half, half])], 2, { axis: 3 });
    const rot = g.node('Concat', [g.node('Neg', [x2!]), x1!], { axis: 3 });
    return g.node('Add', [g.node('Mul', [x, cos]), g.node('Mul', [rot, sin])]);
  }

  /** Mamba2 mixer of layer l on u [M,H]; wires its state inputs/outputs. Returns [M,H]. */
  private mamba(l: number, u: string): string {
    const { g, d } = this;
    const H = d.hiddenSize;
    const m = this.w.layers[l]!.mixer;
    const { dInner, convDim, nMambaHeads: nh, mambaHeadDim: P, mambaDState: N, mambaNGroups: G } = d;
    const hpg = nh / G;
    const K = d.mambaDConv;
    const taps = convTapsOf(d);
    const p = `layers.${l}.mamba`;

    const zxbcdt = this.gemmT(u, this.weight(`${p}.in_proj`, m.inProj, [d.inProjOut, H])); // [M, 2d+2GN+nh]
    const [z, xbc, dtRaw] = g.nodeN('Split', [zxbcdt, g.constInt64([dInner, convDim, nh])], 3, { axis: 1 });

    // Depthwise causal conv over concat(carried taps, new xBC): out_t = bias + Σ_k w_k · xpad[t+k].
    const convIn = g.input(GraphNames.convState(l), 'float32', ['batch', taps, convDim]);
    const xpad = g.node('Concat', [convIn, this.reshape(xbc!, this.shapeBTWith([convDim]))], { axis: 1 }); // [B,T+taps,C]
    g.node('Slice', [xpad, g.constInt64([-taps]), g.constInt64([INT64_MAX]), g.constInt64([1])], {}, GraphNames.convStateOut(l));
    g.output(GraphNames.convStateOut(l), 'float32', ['batch', taps, convDim]);
    const cw = m.conv1dWeight.toFloat32();
    if (cw.length !== convDim * K) throw new Error(`${m.conv1dWeight.name}: ${cw.length} values, expected ${convDim * K}`);
    let conv: string | null = null;
    for (let k = 0; k < K; k++) {
      const tap = new Float32Array(convDim);
      for (let c = 0; c < convDim; c++) tap[c] = cw[c * K + k]!;
      const end = k - taps === 0 ? INT64_MAX : k - taps;
      const shifted = g.node('Slice', [xpad, g.constInt64([k]), g.constInt64([end]), g.constInt64([1])]);
      const term = g.node('Mul', [shifted, g.weight(`${p}.conv_tap${k}`, tap, [convDim])]);
      conv = conv === null ? term : g.node('Add', [conv, term]);
    }
    if (m.conv1dBias !== null) conv = g.node('Add', [conv!, this.weight(`${p}.conv_bias`, m.conv1dBias, [convDim])]);
    const act = this.silu(conv!); // [B,T,C]
    const [xs, bs, cs] = g.nodeN('Split', [act, g.constInt64([dInner, G * N, G * N])], 3, { axis: 2 });

    // Heads as [G, hpg]: B/C broadcast over the heads of their group inside MatMul.
    const xg = g.node('Transpose', [this.reshape(xs!, this.shapeBTWith([G, hpg, P]))], { perm: [0, 2, 3, 1, 4] }); // [B,G,hpg,T,P]
    const grouped = (t: string) => g.node('Transpose', [this.reshape(t, this.shapeBTWith([G, N]))], { perm: [0, 2, 1, 3] }); // [B,G,T,N]
    const bg2 = grouped(bs!);
    const cg2 = grouped(cs!);
    const bg = g.node('Unsqueeze', [bg2, g.constInt64([2])]); // [B,G,1,T,N]
    const cg = g.node('Unsqueeze', [cg2, g.constInt64([2])]);

    const dtBias = this.weight(`${p}.dt_bias`, m.dtBias, [nh]);
    const dt2 = g.node('Softplus', [g.node('Add', [dtRaw!, dtBias])]); // [M,nh]
    const dt = g.node('Transpose', [this.reshape(dt2, this.shapeBTWith([G, hpg]))], { perm: [0, 2, 3, 1] }); // [B,G,hpg,T]
    const aNeg = Float32Array.from(m.aLog.toFloat32(), (v) => -Math.exp(v));
    const A = g.weight(`${p}.A`, aNeg, [G, hpg, 1]);
    const lam = g.node('CumSum', [g.node('Mul', [dt, A]), g.constInt64([3], [])]); // Λ [B,G,hpg,T]

    // L_ij = exp(Λi − Λj) for j ≤ i (−inf added above the diagonal before exp, so it cannot overflow).
    const seg = g.node('Sub', [g.node('Unsqueeze', [lam, g.constInt64([4])]), g.node('Unsqueeze', [lam, g.constInt64([3])])]);
    const lmat = g.node('Exp', [g.node('Add', [seg, this.causalTT])]); // [B,G,hpg,T,T]
    const cb = g.node('MatMul', [cg, g.node('Transpose', [bg], { perm: [0, 1, 2, 4, 3] })]); // [B,G,1,T,T]
    const wmat = g.node('Mul', [g.node('Mul', [lmat, cb]), g.node('Unsqueeze', [dt, g.constInt64([3])])]);
    const yDiag = g.node('MatMul', [wmat, xg]); // [B,G,hpg,T,P]

    const ssmIn = g.input(GraphNames.ssmState(l), 'float32', ['batch', nh, P, N]);
    const s0 = this.reshape(ssmIn, g.constInt64([0, G, hpg, P, N]));
    // S0·Cᵀ with the group's heads folded into M: one GEMM per (b, g) reading the state row-major
    // (a broadcast batch dim would make ORT loop over B·nh tiny GEMMs), then the small result is transposed.
    const cgT = g.node('Transpose', [cg2], { perm: [0, 1, 3, 2] }); // [B,G,N,T]
    const s0c = g.node('MatMul', [this.reshape(ssmIn, g.constInt64([0, G, hpg * P, N])), cgT]); // [B,G,hpg·P,T]
    const cs0 = g.node('Transpose', [this.reshape(s0c, g.constInt64([0, G, hpg, P, -1]))], { perm: [0, 1, 2, 4, 3] }); // [B,G,hpg,T,P]
    const yOff = g.node('Mul', [cs0, g.node('Unsqueeze', [g.node('Exp', [lam]), g.constInt64([4])])]);
    const D = this.weight(`${p}.D`, m.d, [nh]);
    const Dg = this.reshape(D, g.constInt64([G, hpg, 1, 1]));
    const y = g.node('Add', [g.node('Add', [yDiag, yOff]), g.node('Mul', [xg, Dg])]);

    // New state: exp(Λ_T)·S0 + Σ_j exp(Λ_T − Λ_j)·dt_j · x_j ⊗ B_j
    const lamT = g.node('Gather', [lam, g.constInt64([-1], [])], { axis: 3 }); // [B,G,hpg]
    const wj = g.node('Mul', [g.node('Exp', [g.node('Sub', [g.node('Unsqueeze', [lamT, g.constInt64([3])]), lam])]), dt]); // [B,G,hpg,T]
    const xw = g.node('Mul', [xg, g.node('Unsqueeze', [wj, g.constInt64([4])])]);
    const xwT = this.reshape(g.node('Transpose', [xw], { perm: [0, 1, 2, 4, 3] }), g.constInt64([0, G, hpg * P, -1])); // [B,G,hpg·P,T]
    const sIn = this.reshape(g.node('MatMul', [xwT, bg2]), g.constInt64([0, G, hpg, P, N])); // [B,G,hpg,P,N]
    const decay = g.node('Unsqueeze', [g.node('Exp', [lamT]), g.constInt64([3, 4])]);
    const s1 = g.node('Add', [g.node('Mul', [s0, decay]), sIn]);
    g.node('Reshape', [s1, g.constInt64([0, nh, P, N])], {}, GraphNames.ssmStateOut(l));
    g.output(GraphNames.ssmStateOut(l), 'float32', ['batch', nh, P, N]);

    // Gated group RMSNorm: v = y·SiLU(z), normalized per group of d/G channels, × weight.
    const y2 = this.reshape(g.node('Transpose', [y], { perm: [0, 3, 1, 2, 4] }), g.constInt64([-1, dInner])); // [M,d]
    const gated = g.node('Mul', [y2, this.silu(z!)]);
    const normed = this.reshape(this.rmsNorm(this.reshape(gated, g.constInt64([-1, G, dInner / G])), null, 1e-5), g.constInt64([-1, dInner]));
    const v = g.node('Mul', [normed, this.weight(`${p}.norm`, m.norm, [dInner])]);
    return this.gemmT(v, this.weight(`${p}.out_proj`, m.outProj, [H, dInner]));
  }
}

/** Serializes the step graph for `dims`/`weights`; weights go through `sink`. */
export function buildZamba2StepGraph(dims: Zamba2Dims, weights: Zamba2Weights, sink: WeightSink): Uint8Array {
  return new StepGraphBuilder(dims, weights, sink).build();
}

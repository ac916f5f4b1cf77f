/**
 * A plain float64, token-by-token Zamba2 forward (spec §3-4, sequential recurrence, no chunking, no
 * dt floor). It exists to check the ONNX step graph on random small weights in unit tests; it is
 * slow (O(params) scalar JS per token) and never serves.
 *
 * Ownership: a Zamba2ReferenceState belongs to one sequence; forward() mutates it.
 */
import type { Zamba2Dims, Zamba2Weights, TensorView } from '../../model/types.js';

export interface Zamba2ReferenceState {
  /** Per layer [taps][convDim] (oldest first). */
  conv: Float64Array[];
  /** Per layer [nh][P][N]. */
  ssm: Float64Array[];
  /** Per hybrid invocation: post-rope keys and values, one [2H] row per past token. */
  keys: Float64Array[][];
  values: Float64Array[][];
  position: number;
}

const f64 = (t: TensorView): Float64Array => Float64Array.from(t.toFloat32());

/** y[o] = Σ_i W[o,i]·x[i] for W [out,in]. */
function matVec(w: Float64Array, x: Float64Array, out: number): Float64Array {
  const inDim = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const base = o * inDim;
    for (let i = 0; i < inDim; i++) s += w[base + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array | null, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (w === null ? 1 : w[i]!));
}

const silu = (v: number): number => v / (1 + Math.exp(-v));
const softplus = (v: number): number => (v > 20 ? v : Math.log1p(Math.exp(v)));

/** erf via Abramowitz-Stegun 7.1.26 is too coarse for 1e-4 checks; use a series/continued fraction. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series, converges fast for |x| < 2.5
    let sum = ax;
    let term = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc continued fraction (Lentz) for |x| ≥ 2.5
  const tiny = 1e-300;
  let f = ax;
  let c = ax;
  let dd = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    dd = ax + an * dd;
    dd = 1 / (Math.abs(dd) < tiny ? tiny : dd);
    c = ax + an / c;
    const delta = c * dd;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

const gelu = (v: number): number => 0.5 * v * (1 + erf(v / Math.SQRT2));

export class Zamba2Reference {
  private readonly embed: Float64Array;
  private readonly lmHead: Float64Array;
  private readonly finalNorm: Float64Array;
  private readonly layers;
  private readonly blocks;
  private readonly adapters;

  constructor(private readonly dims: Zamba2Dims, w: Zamba2Weights) {
    this.embed = f64(w.embedTokens);
    this.lmHead = w.lmHead === w.embedTokens ? this.embed : f64(w.lmHead);
    this.finalNorm = f64(w.finalNorm);
    this.layers = w.layers.map((l) => ({
      inputNorm: f64(l.inputNorm),
      linear: l.linear === null ? null : f64(l.linear),
      inProj: f64(l.mixer.inProj),
      convW: f64(l.mixer.conv1dWeight),
      convB: l.mixer.conv1dBias === null ? null : f64(l.mixer.conv1dBias),
      dtBias: f64(l.mixer.dtBias),
      A: f64(l.mixer.aLog).map((v) => -Math.exp(v)),
      D: f64(l.mixer.d),
      norm: f64(l.mixer.norm),
      outProj: f64(l.mixer.outProj),
    }));
    this.blocks = w.sharedBlocks.map((b) => ({
      inputNorm: f64(b.inputNorm),
      q: f64(b.qProj),
      k: f64(b.kProj),
      v: f64(b.vProj),
      o: f64(b.oProj),
      preFf: f64(b.preFfNorm),
      gateUp: f64(b.gateUp),
      down: f64(b.down),
    }));
    const ad = (a: { w0: TensorView; w1: TensorView } | null) => (a === null ? null : { w0: f64(a.w0), w1: f64(a.w1) });
    this.adapters = w.hybridAdapters.map((a) => ({ q: ad(a.q), k: ad(a.k), v: ad(a.v), gateUp: ad(a.gateUp) }));
  }

  newState(): Zamba2ReferenceState {
    const d = this.dims;
    const nAttn = d.hybridLayerIds.length;
    return {
      conv: Array.from({ length: d.numLayers }, () => new Float64Array((d.mambaDConv - 1) * d.convDim)),
      ssm: Array.from({ length: d.numLayers }, () => new Float64Array(d.nMambaHeads * d.mambaHeadDim * d.mambaDState)),
      keys: Array.from({ length: nAttn }, () => []),
      values: Array.from({ length: nAttn }, () => []),
      position: 0,
    };
  }

  /** Feeds tokens one by one; returns the logits after each token. */
  forward(state: Zamba2ReferenceState, tokens: readonly number[]): Float64Array[] {
    return tokens.map((t) => this.step(state, t));
  }

  private project(u: Float64Array, w: Float64Array, out: number, a: { w0: Float64Array; w1: Float64Array } | null): Float64Array {
    const y = matVec(w, u, out);
    if (a !== null) {
      const r = this.dims.adapterRank;
      const mid = matVec(a.w0, u, r);
      const add = matVec(a.w1, mid, out);
      for (let i = 0; i < out; i++) y[i]! += add[i]!;
    }
    return y;
  }

  private step(st: Zamba2ReferenceState, token: number): Float64Array {
    const d = this.dims;
    const H = d.hiddenSize;
    const e = this.embed.slice(token * H, (token + 1) * H);
    let x = e.slice();
    for (let l = 0; l < d.numLayers; l++) {
      const L = this.layers[l]!;
      let mixIn = x;
      const h = d.hybridLayerIds.indexOf(l);
      if (h >= 0) {
        const blockOut = this.sharedBlock(st, h, x, e);
        const tr = matVec(L.linear!, blockOut, H);
        mixIn = x.map((v, i) => v + tr[i]!);
      }
      const out = this.mamba(st, l, rmsNorm(mixIn, L.inputNorm, d.rmsNormEps));
      x = x.map((v, i) => v + out[i]!);
    }
    st.position++;
    return matVec(this.lmHead, rmsNorm(x, this.finalNorm, d.rmsNormEps), d.vocabSize);
  }

  private sharedBlock(st: Zamba2ReferenceState, h: number, x: Float64Array, e: Float64Array): Float64Array {
    const d = this.dims;
    const H = d.hiddenSize;
    const H2 = 2 * H;
    const heads = d.numAttentionHeads;
    const ahd = d.attentionHeadDim;
    const F = d.intermediateSize;
    const B = this.blocks[d.hybridBlockIds[h]!]!;
    const A = this.adapters[h]!;
    const cat = new Float64Array(H2);
    cat.set(x, 0);
    cat.set(e, H);
    const u = rmsNorm(cat, B.inputNorm, d.rmsNormEps);
    const q = this.project(u, B.q, H2, A.q);
    const k = this.project(u, B.k, H2, A.k);
    const v = this.project(u, B.v, H2, A.v);
    if (d.useMemRope) {
      const half = ahd / 2;
      for (const t of [q, k]) {
        for (let hd = 0; hd < heads; hd++) {
          const o = hd * ahd;
          for (let i = 0; i < half; i++) {
            const ang = st.position * Math.pow(d.ropeTheta, (-2 * i) / ahd);
            const c = Math.cos(ang);
            const s = Math.sin(ang);
            const a1 = t[o + i]!;
            const a2 = t[o + half + i]!;
            t[o + i] = a1 * c - a2 * s;
            t[o + half + i] = a2 * c + a1 * s;
          }
        }
      }
    }
    st.keys[h]!.push(k);
    st.values[h]!.push(v);
    const keys = st.keys[h]!;
    const vals = st.values[h]!;
    const scale = 1 / Math.sqrt(d.kvChannels);
    const attn = new Float64Array(H2);
    for (let hd = 0; hd < heads; hd++) {
      const o = hd * ahd;
      const sc = keys.map((kk) => {
        let s = 0;
        for (let i = 0; i < ahd; i++) s += q[o + i]! * kk[o + i]!;
        return s * scale;
      });
      const mx = Math.max(...sc);
      const ex = sc.map((s) => Math.exp(s - mx));
      const z = ex.reduce((a, b) => a + b, 0);
      for (let j = 0; j < keys.length; j++) {
        const p = ex[j]! / z;
        const vv = vals[j]!;
        for (let i = 0; i < ahd; i++) attn[o + i]! += p * vv[o + i]!;
      }
    }
    const ao = matVec(B.o, attn, H);
    const vn = rmsNorm(ao, B.preFf, d.rmsNormEps);
    const gu = this.project(vn, B.gateUp, 2 * F, A.gateUp);
    const act = new Float64Array(F);
    for (let i = 0; i < F; i++) act[i] = gelu(gu[i]!) * gu[F + i]!;
    return matVec(B.down, act, H);
  }

  private mamba(st: Zamba2ReferenceState, l: number, u: Float64Array): Float64Array {
    const d = this.dims;
    const L = this.layers[l]!;
    const { dInner, convDim, nMambaHeads: nh, mambaHeadDim: P, mambaDState: N, mambaNGroups: G, mambaDConv: K } = d;
    const taps = K - 1;
    const zx = matVec(L.inProj, u, d.inProjOut);
    const z = zx.subarray(0, dInner);
    const xbc = zx.subarray(dInner, dInner + convDim);
    const dtRaw = zx.subarray(dInner + convDim);
    const conv = st.conv[l]!;
    const act = new Float64Array(convDim);
    for (let c = 0; c < convDim; c++) {
      let s = L.convB === null ? 0 : L.convB[c]!;
      for (let k = 0; k < taps; k++) s += L.convW[c * K + k]! * conv[k * convDim + c]!;
      s += L.convW[c * K + taps]! * xbc[c]!;
      act[c] = silu(s);
    }
    conv.copyWithin(0, convDim); // drop the oldest tap
    conv.set(xbc, (taps - 1) * convDim);
    const xs = act.subarray(0, dInner);
    const bs = act.subarray(dInner, dInner + G * N);
    const cs = act.subarray(dInner + G * N);
    const ssm = st.ssm[l]!;
    const y = new Float64Array(dInner);
    const hpg = nh / G;
    for (let hd = 0; hd < nh; hd++) {
      const g = Math.floor(hd / hpg);
      const dt = softplus(dtRaw[hd]! + L.dtBias[hd]!);
      const dA = Math.exp(dt * L.A[hd]!);
      for (let p = 0; p < P; p++) {
        const xv = xs[hd * P + p]!;
        let yv = 0;
        const base = (hd * P + p) * N;
        for (let n = 0; n < N; n++) {
          const s = ssm[base + n]! * dA + dt * xv * bs[g * N + n]!;
          ssm[base + n] = s;
          yv += s * cs[g * N + n]!;
        }
        y[hd * P + p] = yv + L.D[hd]! * xv;
      }
    }
    const gs = dInner / G;
    const v = new Float64Array(dInner);
    for (let g = 0; g < G; g++) {
      let ss = 0;
      for (let i = g * gs; i < (g + 1) * gs; i++) {
        v[i] = y[i]! * silu(z[i]!);
        ss += v[i]! * v[i]!;
      }
      const r = 1 / Math.sqrt(ss / gs + 1e-5);
      for (let i = g * gs; i < (g + 1) * gs; i++) v[i] = v[i]! * r * L.norm[i]!;
    }
    return matVec(L.outProj, v, d.hiddenSize);
  }
}

/**
 * Owns the onnxruntime-node session of the Zamba2 step graph: builds the graph from a checkpoint,
 * loads it (weights inline when small, else through an external-data file in a temp folder), and
 * runs one batch of B sequences × T tokens with flat Float32Array state buffers.
 *
 * Ownership: StepSession owns the ORT session. Callers own every input buffer; outputs are fresh
 * arrays owned by the caller after run() resolves.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { Zamba2Dims, Zamba2Weights } from '../../model/types.js';
import { buildZamba2StepGraph, convTapsOf, GraphNames } from './onnx-builder.js';
import { ExternalWeightSink, InlineWeightSink } from './onnx-graph.js';

/** Above this many weight bytes the graph keeps its weights in an external file (protobuf cap 2 GiB). */
const INLINE_WEIGHT_LIMIT_BYTES = 1.5 * 1024 ** 3;

export interface StepSessionOptions {
  /** Intra-op threads (default: available cores). */
  threads?: number;
  /** Folder for the external-data build of large graphs (default: os.tmpdir()). */
  scratchDir?: string;
  /** Weights above this many bytes go to an external-data file (default 1.5 GiB; protobuf caps at 2 GiB). */
  inlineWeightLimitBytes?: number;
  /** Extra ORT session config entries (e.g. { 'session.disable_prepacking': '1' }). */
  sessionConfig?: Record<string, string>;
  /** Receives the time spent building the graph and creating the session. */
  onTiming?: (t: { buildMs: number; sessionMs: number; external: boolean }) => void;
}

/** One batched chunk: B sequences with T new tokens each and P past tokens (padded, masked). */
export interface StepBatchInput {
  batch: number;
  chunk: number;
  past: number;
  /** [B·T] token ids */
  tokenIds: Int32Array;
  /** [B·T] absolute positions (for rope) */
  positions: Int32Array;
  /** Rows (b·T + t) whose logits are wanted, ascending. */
  logitsRows: Int32Array;
  /** [B] number of valid past tokens of each sequence (≤ past) */
  pastLengths: Int32Array;
  /** Per layer [B, taps, convDim] and [B, nh, P, N] */
  convStates: Float32Array[];
  ssmStates: Float32Array[];
  /** Per attention invocation [B, past, 2H]; rows past a sequence's length are ignored (masked). */
  pastKeys: Float32Array[];
  pastValues: Float32Array[];
}

export interface StepBatchOutput {
  /** [logitsRows.length, V] */
  logits: Float32Array;
  convStates: Float32Array[];
  ssmStates: Float32Array[];
  /** Per attention invocation [B, T, 2H] */
  newKeys: Float32Array[];
  newValues: Float32Array[];
}

function estimateWeightBytes(d: Zamba2Dims): number {
  const H = d.hiddenSize;
  const perLayer = d.inProjOut * H + d.convDim * (d.mambaDConv + 1) + d.dInner * (H + 1) + 3 * d.nMambaHeads + H;
  const block = 4 * (2 * H) ** 2 + 3 * H * d.intermediateSize;
  return 4 * (d.vocabSize * H + d.numLayers * perLayer + d.numMemBlocks * block + d.hybridLayerIds.length * H * H);
}

export class StepSession {
  private constructor(
    readonly dims: Zamba2Dims,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(dims: Zamba2Dims, weights: Zamba2Weights, opts: StepSessionOptions = {}): Promise<StepSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      intraOpNumThreads: opts.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...(opts.sessionConfig ? { extra: nestConfigEntries(opts.sessionConfig) } : {}),
    };
    const t0 = performance.now();
    const report = (t1: number, external: boolean) =>
      opts.onTiming?.({ buildMs: t1 - t0, sessionMs: performance.now() - t1, external });
    if (estimateWeightBytes(dims) <= (opts.inlineWeightLimitBytes ?? INLINE_WEIGHT_LIMIT_BYTES)) {
      const model = buildZamba2StepGraph(dims, weights, new InlineWeightSink());
      const t1 = performance.now();
      const session = await ort.InferenceSession.create(model, sessionOptions);
      report(t1, false);
      return new StepSession(dims, session);
    }
    const dir = mkdtempSync(join(opts.scratchDir ?? tmpdir(), 'zamba2-onnx-'));
    try {
      const sink = new ExternalWeightSink(join(dir, 'weights.bin'), 'weights.bin');
      let model: Uint8Array;
      try {
        model = buildZamba2StepGraph(dims, weights, sink);
      } finally {
        sink.close();
      }
      const modelPath = join(dir, 'model.onnx');
      writeFileSync(modelPath, model);
      const t1 = performance.now();
      const session = await ort.InferenceSession.create(modelPath, sessionOptions);
      report(t1, true);
      return new StepSession(dims, session);
    } finally {
      // The session holds its own copy (or mapping) of the weights once created.
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async run(inp: StepBatchInput): Promise<StepBatchOutput> {
    const d = this.dims;
    const { batch: B, chunk: T, past: P } = inp;
    const H2 = d.attentionHiddenSize;
    const taps = convTapsOf(d);
    const feeds: Record<string, ort.Tensor> = {};
    feeds[GraphNames.inputIds] = new ort.Tensor('int64', BigInt64Array.from(inp.tokenIds, (v) => BigInt(v)), [B, T]);
    feeds[GraphNames.logitsRows] = new ort.Tensor('int64', BigInt64Array.from(inp.logitsRows, (v) => BigInt(v)), [inp.logitsRows.length]);
    if (d.hybridLayerIds.length > 0) {
      if (d.useMemRope) {
        const [cos, sin] = ropeTables(d, inp.positions);
        feeds[GraphNames.ropeCos] = new ort.Tensor('float32', cos, [B, T, d.attentionHeadDim]);
        feeds[GraphNames.ropeSin] = new ort.Tensor('float32', sin, [B, T, d.attentionHeadDim]);
      }
      feeds[GraphNames.attnMask] = new ort.Tensor('float32', attentionMask(B, T, P, inp.pastLengths), [B, 1, T, P + T]);
      for (let a = 0; a < d.hybridLayerIds.length; a++) {
        feeds[GraphNames.pastKey(a)] = new ort.Tensor('float32', inp.pastKeys[a]!, [B, P, H2]);
        feeds[GraphNames.pastValue(a)] = new ort.Tensor('float32', inp.pastValues[a]!, [B, P, H2]);
      }
    }
    for (let l = 0; l < d.numLayers; l++) {
      feeds[GraphNames.convState(l)] = new ort.Tensor('float32', inp.convStates[l]!, [B, taps, d.convDim]);
      feeds[GraphNames.ssmState(l)] = new ort.Tensor('float32', inp.ssmStates[l]!, [B, d.nMambaHeads, d.mambaHeadDim, d.mambaDState]);
    }
    const out = await this.session.run(feeds);
    const f32 = (name: string): Float32Array => {
      const t = out[name];
      if (t === undefined) throw new Error(`step graph produced no ${name}`);
      return t.data as Float32Array;
    };
    const layers = Array.from({ length: d.numLayers }, (_, l) => l);
    const attn = Array.from({ length: d.hybridLayerIds.length }, (_, a) => a);
    return {
      logits: f32(GraphNames.logits),
      convStates: layers.map((l) => f32(GraphNames.convStateOut(l))),
      ssmStates: layers.map((l) => f32(GraphNames.ssmStateOut(l))),
      newKeys: attn.map((a) => f32(GraphNames.newKey(a))),
      newValues: attn.map((a) => f32(GraphNames.newValue(a))),
    };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/** { 'session.x': 'v' } → { session: { x: 'v' } }, the shape onnxruntime-node's `extra` option takes. */
function nestConfigEntries(entries: Record<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entries)) {
    const parts = key.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  }
  return root;
}

/** cos/sin [B·T, ahd] of NeoX rope (angles in float64, then rounded to float32). */
export function ropeTables(d: Zamba2Dims, positions: Int32Array): [Float32Array, Float32Array] {
  const ahd = d.attentionHeadDim;
  const half = ahd / 2;
  const invFreq = Array.from({ length: half }, (_, i) => Math.pow(d.ropeTheta, (-2 * i) / ahd));
  const cos = new Float32Array(positions.length * ahd);
  const sin = new Float32Array(positions.length * ahd);
  for (let r = 0; r < positions.length; r++) {
    const pos = positions[r]!;
    for (let i = 0; i < half; i++) {
      const ang = pos * invFreq[i]!;
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      cos[r * ahd + i] = c;
      cos[r * ahd + half + i] = c;
      sin[r * ahd + i] = s;
      sin[r * ahd + half + i] = s;
    }
  }
  return [cos, sin];
}

/** Additive mask [B,1,T,P+T]: row (b,i) sees its sequence's valid past and new tokens j ≤ i. */
function attentionMask(B: number, T: number, P: number, pastLengths: Int32Array): Float32Array {
  const S = P + T;
  const mask = new Float32Array(B * T * S).fill(-Infinity);
  for (let b = 0; b < B; b++) {
    const valid = pastLengths[b]!;
    for (let i = 0; i < T; i++) {
      const row = (b * T + i) * S;
      mask.fill(0, row, row + valid);
      mask.fill(0, row + P, row + P + i + 1);
    }
  }
  return mask;
}

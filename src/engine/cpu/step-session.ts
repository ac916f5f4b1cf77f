/**
 * Owns the onnxruntime-node session of the Zamba2 step graph: builds the graph from a checkpoint,
 * loads it (weights inline when small, else through an external-data file in a temp folder), and
 * runs one batch of B sequences × T tokens with flat Float32Array state buffers.
 *
 * The ORT session lives in a worker thread (step-worker.ts): onnxruntime-node runs synchronously on
 * the JS thread that calls it, and a 1.2B step takes seconds on a CPU, so the server's event loop
 * must not be that thread.
 *
 * Ownership: StepSession owns the worker and its session. run() takes ownership of every input
 * array (their buffers are transferred to the worker, leaving them detached here); outputs are
 * fresh arrays owned by the caller. One run at a time (the engine awaits each step).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type * as ort from 'onnxruntime-node';
import type { Zamba2Dims, Zamba2Weights } from '../../model/types.js';
import { buildZamba2StepGraph, convTapsOf, GraphNames } from './onnx-builder.js';
import { ExternalWeightSink, InlineWeightSink } from './onnx-graph.js';
import type { StepWorkerReply, StepWorkerRequest, WireTensor } from './step-worker.js';

/** The worker entry next to this module: .ts under tsx (tests, scripts), .js in dist/. */
const RUNNING_FROM_TS = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(RUNNING_FROM_TS ? './step-worker.ts' : './step-worker.js', import.meta.url);

/**
 * Under tsx the worker must register tsx's loader itself before importing the .ts entry (hooks from
 * --import do not reliably reach worker threads on Node 20), hence a small eval'd bootstrap.
 */
function spawnStepWorker(): Worker {
  if (!RUNNING_FROM_TS) return new Worker(WORKER_URL);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `(async () => { const { register } = await import(${JSON.stringify(tsxApi)}); register(); await import(${JSON.stringify(WORKER_URL.href)}); })()`;
  return new Worker(bootstrap, { eval: true });
}

/** A worker answering one request at a time. */
class StepWorker {
  private readonly worker: Worker;
  private pending: { resolve: (r: StepWorkerReply) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  constructor() {
    this.worker = spawnStepWorker();
    this.worker.on('message', (reply: StepWorkerReply) => {
      const p = this.pending;
      this.pending = null;
      if (p === null) return;
      if (reply.kind === 'error') p.reject(new Error(reply.message));
      else p.resolve(reply);
    });
    const fail = (err: Error) => {
      this.failure = err;
      this.pending?.reject(err);
      this.pending = null;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`ORT worker exited (code ${code})`)));
  }

  request(req: StepWorkerRequest, transfer: ArrayBuffer[] = []): Promise<StepWorkerReply> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.pending !== null) return Promise.reject(new Error('ORT worker is busy'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(req, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

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
    private readonly worker: StepWorker,
  ) {}

  private static async open(dims: Zamba2Dims, model: Uint8Array | string, options: ort.InferenceSession.SessionOptions): Promise<StepSession> {
    const worker = new StepWorker();
    try {
      const transfer = typeof model === 'string' ? [] : [model.buffer as ArrayBuffer];
      await worker.request({ kind: 'create', model, options }, transfer);
      return new StepSession(dims, worker);
    } catch (err) {
      await worker.terminate();
      throw err;
    }
  }

  static async create(dims: Zamba2Dims, weights: Zamba2Weights, opts: StepSessionOptions = {}): Promise<StepSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      intraOpNumThreads: opts.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // No spinning by default: idle ORT threads would take the cores the HTTP thread needs.
      extra: nestConfigEntries({ 'session.intra_op.allow_spinning': '0', ...opts.sessionConfig }),
    };
    const t0 = performance.now();
    const report = (t1: number, external: boolean) =>
      opts.onTiming?.({ buildMs: t1 - t0, sessionMs: performance.now() - t1, external });
    if (estimateWeightBytes(dims) <= (opts.inlineWeightLimitBytes ?? INLINE_WEIGHT_LIMIT_BYTES)) {
      const model = buildZamba2StepGraph(dims, weights, new InlineWeightSink());
      const t1 = performance.now();
      const session = await StepSession.open(dims, model, sessionOptions);
      report(t1, false);
      return session;
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
      const session = await StepSession.open(dims, modelPath, sessionOptions);
      report(t1, true);
      return session;
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
    const feeds: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    const f32 = (name: string, data: Float32Array, dims: number[]) => {
      if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`${name}: ${data.length} values for shape [${dims.join(',')}]`);
      feeds[name] = { type: 'float32', data, dims };
      if (!transfer.includes(data.buffer as ArrayBuffer)) transfer.push(data.buffer as ArrayBuffer);
    };
    const i64 = (name: string, values: Int32Array, dims: number[]) => {
      const data = BigInt64Array.from(values, (v) => BigInt(v));
      feeds[name] = { type: 'int64', data, dims };
      transfer.push(data.buffer as ArrayBuffer);
    };
    i64(GraphNames.inputIds, inp.tokenIds, [B, T]);
    i64(GraphNames.logitsRows, inp.logitsRows, [inp.logitsRows.length]);
    if (d.hybridLayerIds.length > 0) {
      if (d.useMemRope) {
        const [cos, sin] = ropeTables(d, inp.positions);
        f32(GraphNames.ropeCos, cos, [B, T, d.attentionHeadDim]);
        f32(GraphNames.ropeSin, sin, [B, T, d.attentionHeadDim]);
      }
      f32(GraphNames.attnMask, attentionMask(B, T, P, inp.pastLengths), [B, 1, T, P + T]);
      for (let a = 0; a < d.hybridLayerIds.length; a++) {
        f32(GraphNames.pastKey(a), inp.pastKeys[a]!, [B, P, H2]);
        f32(GraphNames.pastValue(a), inp.pastValues[a]!, [B, P, H2]);
      }
    }
    for (let l = 0; l < d.numLayers; l++) {
      f32(GraphNames.convState(l), inp.convStates[l]!, [B, taps, d.convDim]);
      f32(GraphNames.ssmState(l), inp.ssmStates[l]!, [B, d.nMambaHeads, d.mambaHeadDim, d.mambaDState]);
    }
    const reply = await this.worker.request({ kind: 'run', feeds }, transfer);
    if (reply.kind !== 'result') throw new Error(`ORT worker answered ${reply.kind} to run`);
    const out = reply.outputs;
    const get = (name: string): Float32Array => {
      const t = out[name];
      if (t === undefined) throw new Error(`step graph produced no ${name}`);
      return t.data;
    };
    const layers = Array.from({ length: d.numLayers }, (_, l) => l);
    const attn = Array.from({ length: d.hybridLayerIds.length }, (_, a) => a);
    return {
      logits: get(GraphNames.logits),
      convStates: layers.map((l) => get(GraphNames.convStateOut(l))),
      ssmStates: layers.map((l) => get(GraphNames.ssmStateOut(l))),
      newKeys: attn.map((a) => get(GraphNames.newKey(a))),
      newValues: attn.map((a) => get(GraphNames.newValue(a))),
    };
  }

  async close(): Promise<void> {
    try {
      await this.worker.request({ kind: 'close' });
    } finally {
      await this.worker.terminate();
    }
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

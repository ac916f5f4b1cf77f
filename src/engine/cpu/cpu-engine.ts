/**
 * CpuEngine: the Engine seam on onnxruntime-node. One ORT session runs the Zamba2 step graph
 * (onnx-builder.ts) for any batch B, chunk T and past length; the engine gathers each sequence's
 * state slot and KV pages into the graph's inputs, scatters the results back, and samples on the CPU.
 *
 * Batching: sequences of a step with the same chunk length run together (all decodes as one B×1
 * run; equal-length prefill chunks together); pasts are padded to the longest and masked.
 *
 * Ownership: the engine owns the session, the slot pool, the KV page pool and per-slot bookkeeping
 * (token history for penalties, the last logits row for prompt logprobs across chunks); resetSlots
 * clears a slot's bookkeeping, copySlot forks it with the state.
 */
import { availableParallelism, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Zamba2Dims, Zamba2Weights } from '../../model/types.js';
import {
  EngineError,
  type CacheSizes,
  type Engine,
  type EngineDescription,
  type ScheduledSequence,
  type SequenceOutput,
  type StepPlan,
  type StepResult,
  type TokenLogprob,
} from '../engine.js';
import { KvPagePool, StateSlotPool, TOKENS_PER_PAGE, convStateFloats, kvPageBytes, ssmStateFloats, stateSlotBytes } from './cache-pools.js';
import { logSoftmax, sampleFromLogits, tokenLogprob, uniformAt } from './sampler.js';
import { StepSession, type StepSessionOptions } from './step-session.js';

export interface CpuEngineLogger {
  info(obj: object, msg?: string): void;
}

export interface CpuEngineOptions {
  modelId?: string;
  /** Default: the model's max_position_embeddings. */
  maxModelLen?: number;
  /** Default 2048 (chunks longer than 256 run as several graph runs). */
  maxTokensPerStep?: number;
  /** Default 32. */
  maxSequencesPerStep?: number;
  /** ORT intra-op threads; default: available cores. */
  threads?: number;
  /** Bytes for slots + pages; default min(2 GiB, a quarter of RAM). KV pages are allocated on first use. */
  cacheBudgetBytes?: number;
  /** Seed of the engine's own random stream (sequences without a seed). Default 0. */
  seed?: number;
  /** Token ids that end generation; default [dims.eosTokenId]. */
  eosTokenIds?: number[];
  logger?: CpuEngineLogger;
  /** Passed to the ORT session (scratch folder, extra session config); `threads` wins over its own. */
  session?: Omit<StepSessionOptions, 'threads' | 'onTiming'>;
}

/** Per-slot bookkeeping that travels with the Mamba2 state. */
interface SlotBook {
  /** Every token the slot's state has consumed (prompt then output). */
  history: number[];
  /** Logits after the last consumed token (prompt logprobs of the next chunk's first token). */
  lastLogits: Float32Array | null;
}

const emptyBook = (): SlotBook => ({ history: [], lastLogits: null });

/**
 * Longest chunk one graph run takes: the SSD form is quadratic in the chunk ([B, heads, T, T]
 * per layer), so longer chunks are cut into runs of this size (the model's own chunk_size).
 */
const GRAPH_CHUNK_TOKENS = 256;

export class CpuEngine implements Engine {
  private slots: StateSlotPool | null = null;
  private pages: KvPagePool | null = null;
  private books: SlotBook[] = [];
  private closed = false;
  private readonly description: EngineDescription;
  private readonly seed: number;

  private constructor(
    private readonly dims: Zamba2Dims,
    private readonly session: StepSession,
    opts: CpuEngineOptions,
  ) {
    this.seed = opts.seed ?? 0;
    this.description = {
      kind: 'cpu',
      modelId: opts.modelId ?? 'zamba2',
      dtype: 'float32',
      vocabSize: dims.vocabSize,
      maxModelLen: opts.maxModelLen ?? dims.maxPositionEmbeddings,
      mambaLayerCount: dims.numLayers,
      attentionLayerCount: dims.hybridLayerIds.length,
      stateSlotBytes: stateSlotBytes(dims),
      kvPageBytes: kvPageBytes(dims),
      tokensPerPage: TOKENS_PER_PAGE,
      maxTokensPerStep: opts.maxTokensPerStep ?? 2048,
      maxSequencesPerStep: opts.maxSequencesPerStep ?? 32,
      cacheBudgetBytes: opts.cacheBudgetBytes ?? Math.min(2 * 1024 ** 3, Math.floor(totalmem() / 4)),
      eosTokenIds: opts.eosTokenIds ?? [dims.eosTokenId],
    };
  }

  /** Builds the step graph from the weights and opens its session; the weights can be released after. */
  static async create(dims: Zamba2Dims, weights: Zamba2Weights, opts: CpuEngineOptions = {}): Promise<CpuEngine> {
    const t0 = performance.now();
    const threads = opts.threads ?? availableParallelism();
    let timing = {};
    const session = await StepSession.create(dims, weights, { ...opts.session, threads, onTiming: (t) => (timing = t) });
    const engine = new CpuEngine(dims, session, opts);
    opts.logger?.info({ threads, totalMs: Math.round(performance.now() - t0), ...timing, ...engine.description }, 'cpu engine ready');
    return engine;
  }

  describe(): EngineDescription {
    return this.description;
  }

  async initCache(sizes: CacheSizes): Promise<void> {
    if (this.slots !== null) throw new EngineError('initCache called twice', 'cache_initialized', false);
    const need = sizes.slotCount * this.description.stateSlotBytes + sizes.pageCount * this.description.kvPageBytes;
    if (need > this.description.cacheBudgetBytes) {
      throw new EngineError(`cache sizes need ${need} bytes, budget is ${this.description.cacheBudgetBytes}`, 'cache_over_budget', false);
    }
    this.slots = new StateSlotPool(this.dims, sizes.slotCount);
    this.pages = new KvPagePool(this.dims, sizes.pageCount);
    this.books = Array.from({ length: sizes.slotCount }, emptyBook);
  }

  async copySlot(src: number, dst: number): Promise<void> {
    const slots = this.requireCache().slots;
    slots.copy(src, dst);
    const from = this.books[src]!;
    this.books[dst] = { history: from.history.slice(), lastLogits: from.lastLogits };
  }

  async step(plan: StepPlan): Promise<StepResult> {
    const { slots } = this.requireCache();
    const t0 = performance.now();
    for (const slot of plan.resetSlots) {
      slots.reset(slot);
      this.books[slot] = emptyBook();
    }
    this.validate(plan);
    const bySeq = new Map<number, SequenceOutput>();
    const groups = new Map<number, ScheduledSequence[]>();
    for (const s of plan.sequences) {
      const g = groups.get(s.tokens.length);
      if (g === undefined) groups.set(s.tokens.length, [s]);
      else g.push(s);
    }
    try {
      for (const [chunkLen, group] of groups) {
        if (chunkLen <= GRAPH_CHUNK_TOKENS) {
          for (const out of await this.runGroup(group)) bySeq.set(out.seqId, out);
        } else {
          for (const s of group) bySeq.set(s.seqId, await this.runLong(s));
        }
      }
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw new EngineError(`cpu step ${plan.stepId} failed: ${(err as Error).message}`, 'engine_failed', true, { cause: err });
    }
    return { stepId: plan.stepId, outputs: plan.sequences.map((s) => bySeq.get(s.seqId)!), computeMs: performance.now() - t0 };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slots = null;
    this.pages = null;
    await this.session.close();
  }

  private requireCache(): { slots: StateSlotPool; pages: KvPagePool } {
    if (this.closed) throw new EngineError('engine is closed', 'engine_closed', false);
    if (this.slots === null || this.pages === null) throw new EngineError('step before initCache', 'cache_not_initialized', false);
    return { slots: this.slots, pages: this.pages };
  }

  private validate(plan: StepPlan): void {
    const d = this.description;
    let tokens = 0;
    const seen = new Set<number>();
    for (const s of plan.sequences) {
      tokens += s.tokens.length;
      if (seen.has(s.seqId)) throw new EngineError(`sequence ${s.seqId} appears twice in step ${plan.stepId}`, 'duplicate_sequence', false);
      seen.add(s.seqId);
      if (s.tokens.length === 0) throw new EngineError(`sequence ${s.seqId} has no tokens`, 'empty_chunk', false);
      if (s.startPosition + s.tokens.length > d.maxModelLen) throw new EngineError(`sequence ${s.seqId} exceeds max model length`, 'too_long', false);
      const book = this.books[s.slot];
      if (book === undefined) throw new EngineError(`state slot ${s.slot} out of range`, 'slot_out_of_range', false);
      if (book.history.length !== s.startPosition) {
        throw new EngineError(
          `sequence ${s.seqId}: start position ${s.startPosition} but slot ${s.slot} holds ${book.history.length} tokens`,
          'position_mismatch',
          false,
        );
      }
      for (const t of s.tokens) if (t < 0 || t >= d.vocabSize) throw new EngineError(`token id ${t} out of vocabulary`, 'bad_token', false);
    }
    if (tokens > d.maxTokensPerStep) throw new EngineError(`step carries ${tokens} tokens > ${d.maxTokensPerStep}`, 'step_too_large', false);
    if (plan.sequences.length > d.maxSequencesPerStep) throw new EngineError(`step carries too many sequences`, 'step_too_large', false);
  }

  /** One sequence whose chunk exceeds GRAPH_CHUNK_TOKENS: consecutive runs, outputs merged. */
  private async runLong(s: ScheduledSequence): Promise<SequenceOutput> {
    const parts: SequenceOutput[] = [];
    for (let start = 0; start < s.tokens.length; start += GRAPH_CHUNK_TOKENS) {
      const end = Math.min(s.tokens.length, start + GRAPH_CHUNK_TOKENS);
      const last = end === s.tokens.length;
      const [out] = await this.runGroup([
        { ...s, startPosition: s.startPosition + start, tokens: s.tokens.subarray(start, end), sample: s.sample && last },
      ]);
      parts.push(out!);
    }
    const final = parts[parts.length - 1]!;
    const merged: SequenceOutput = {
      seqId: s.seqId,
      token: final.token,
      logprobs: final.logprobs,
      promptLogprobs: s.promptLogprobs === null ? null : parts.flatMap((p) => p.promptLogprobs ?? []),
    };
    if (s.returnLogits === true) {
      const all = new Float32Array(s.tokens.length * this.dims.vocabSize);
      let offset = 0;
      for (const p of parts) {
        all.set(p.logits!, offset);
        offset += p.logits!.length;
      }
      merged.logits = all;
    }
    return merged;
  }

  /** Runs sequences with the same chunk length (≤ GRAPH_CHUNK_TOKENS) as one batch. */
  private async runGroup(seqs: ScheduledSequence[]): Promise<SequenceOutput[]> {
    const { slots, pages } = this.requireCache();
    const d = this.dims;
    const B = seqs.length;
    const T = seqs[0]!.tokens.length;
    const P = Math.max(...seqs.map((s) => s.startPosition));
    const H2 = d.attentionHiddenSize;
    const convF = convStateFloats(d);
    const ssmF = ssmStateFloats(d);
    const layers = d.layerKinds.map((_, l) => l);
    const attn = d.hybridLayerIds.map((_, a) => a);

    // Copies: the session takes ownership of its inputs (they move to the ORT worker).
    const stack = (floats: number, view: (s: ScheduledSequence) => Float32Array): Float32Array => {
      const out = new Float32Array(B * floats);
      seqs.forEach((s, b) => out.set(view(s), b * floats));
      return out;
    };
    const past = (a: number, kv: 0 | 1): Float32Array => {
      const out = new Float32Array(B * P * H2);
      seqs.forEach((s, b) => pages.gather(s.pageTable, a, kv, s.startPosition, out, b * P * H2));
      return out;
    };
    // Every row when the caller scores the chunk, else just the row that samples.
    const wantsAllRows = (s: ScheduledSequence) => s.returnLogits === true || s.promptLogprobs !== null;
    const logitsRows: number[] = [];
    const firstRow: number[] = [];
    seqs.forEach((s, b) => {
      firstRow.push(logitsRows.length);
      if (wantsAllRows(s)) for (let i = 0; i < T; i++) logitsRows.push(b * T + i);
      else logitsRows.push(b * T + T - 1);
    });
    const tokenIds = new Int32Array(B * T);
    const positions = new Int32Array(B * T);
    seqs.forEach((s, b) => {
      tokenIds.set(s.tokens, b * T);
      for (let i = 0; i < T; i++) positions[b * T + i] = s.startPosition + i;
    });

    const out = await this.session.run({
      batch: B,
      chunk: T,
      past: P,
      tokenIds,
      positions,
      logitsRows: Int32Array.from(logitsRows),
      pastLengths: Int32Array.from(seqs, (s) => s.startPosition),
      convStates: layers.map((l) => stack(convF, (s) => slots.convView(l, s.slot))),
      ssmStates: layers.map((l) => stack(ssmF, (s) => slots.ssmView(l, s.slot))),
      pastKeys: attn.map((a) => past(a, 0)),
      pastValues: attn.map((a) => past(a, 1)),
    });

    const V = d.vocabSize;
    return seqs.map((s, b) => {
      for (const l of layers) {
        slots.convView(l, s.slot).set(out.convStates[l]!.subarray(b * convF, (b + 1) * convF));
        slots.ssmView(l, s.slot).set(out.ssmStates[l]!.subarray(b * ssmF, (b + 1) * ssmF));
      }
      for (const a of attn) {
        pages.scatter(s.pageTable, a, 0, s.startPosition, T, out.newKeys[a]!, b * T * H2);
        pages.scatter(s.pageTable, a, 1, s.startPosition, T, out.newValues[a]!, b * T * H2);
      }
      const rowCount = wantsAllRows(s) ? T : 1;
      const logits = out.logits.subarray(firstRow[b]! * V, (firstRow[b]! + rowCount) * V);
      return this.finishSequence(s, logits);
    });
  }

  /**
   * Updates the slot's bookkeeping and samples / scores as the sequence asked. `logits` holds every
   * row of the chunk when it asked for logits or prompt logprobs, else only the last row.
   */
  private finishSequence(s: ScheduledSequence, logits: Float32Array): SequenceOutput {
    const V = this.dims.vocabSize;
    const T = s.tokens.length;
    const book = this.books[s.slot]!;
    const rowCount = logits.length / V;
    const row = (i: number) => logits.subarray((i - (T - rowCount)) * V, (i - (T - rowCount) + 1) * V);

    let promptLogprobs: TokenLogprob[] | null = null;
    if (s.promptLogprobs !== null) {
      promptLogprobs = [];
      for (let i = 0; i < T; i++) {
        const prev = i === 0 ? (s.startPosition > 0 ? book.lastLogits : null) : row(i - 1);
        if (prev !== null) promptLogprobs.push(tokenLogprob(logSoftmax(prev), s.tokens[i]!, s.promptLogprobs));
      }
    }
    for (const t of s.tokens) book.history.push(t);
    const last = row(T - 1);
    book.lastLogits = last.slice();

    let token = -1;
    let logprobs: TokenLogprob | null = null;
    if (s.sample) {
      const p = s.sampling;
      const position = s.startPosition + T;
      const key = p.seed ?? this.seed * 1_000_003 + s.seqId;
      token = sampleFromLogits(last, p, { tokens: book.history, promptLength: s.promptLength }, uniformAt(key, position));
      if (p.logprobs !== null) logprobs = tokenLogprob(logSoftmax(last), token, p.logprobs);
    }
    const result: SequenceOutput = { seqId: s.seqId, token, logprobs, promptLogprobs };
    if (s.returnLogits === true) result.logits = logits.slice();
    return result;
  }
}

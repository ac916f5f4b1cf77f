/**
 * The CUDA engine: the Engine seam over the native addon. The addon computes each step on the GPU
 * off the JS thread; this class validates plans, packs them (step-packing.ts), and turns the
 * native outputs into SequenceOutputs: GPU argmax for plain greedy sequences, the GPU sampler
 * (kernels/src/sampling.cu: temperature, top-k/p, min-p, penalties, bias, seeded draws, top
 * logprobs) for every other sampled row, and the host (../cpu/sampler.ts) only for prompt
 * logprobs over copied-back logits rows. ZAMBA2_HOST_SAMPLING=1 (or `hostSampling`) draws on the
 * host instead, over copied-back rows, for comparison.
 *
 * Ownership: the native engine owns every device byte (weights, state slots, KV pages); this class
 * owns per-slot host bookkeeping (token history, seen-token counts for penalties, last logits row
 * for prompt logprobs across chunks). cache/ owns which slot/page belongs to whom.
 */
import type { Zamba2Dims } from '../../model/types.js';
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
import { logSoftmax, sampleFromLogits, tokenLogprob, uniformAt } from '../cpu/sampler.js';
import type { CudaDeviceInfo, NativeEngineHandle, NativeStepOutput, Zamba2CudaAddon } from './binding.js';
import { isGpuGreedy, packSampling, packStep, PAGE_TOKENS, SAMPLE_MAX_TOP, type PackedSampling, type SeenTokenCounts } from './step-packing.js';

export interface CudaEngineLogger {
  info(obj: object, msg?: string): void;
}

export interface CudaEngineOptions {
  modelId?: string;
  maxModelLen?: number;
  maxTokensPerStep?: number;
  maxSequencesPerStep?: number;
  /** Bytes for state slots + KV pages; default 90% of the GPU memory free after weights and scratch. */
  cacheBudgetBytes?: number;
  /** Seed of the engine's own random stream (sequences without a seed). Default 0. */
  seed?: number;
  eosTokenIds?: number[];
  /** Draw sampled rows on the host over copied-back logits (default: env ZAMBA2_HOST_SAMPLING=1). */
  hostSampling?: boolean;
  logger?: CudaEngineLogger;
}

interface SlotBook {
  history: number[];
  lastLogits: Float32Array | null;
  /** Seen token → output occurrences, built on the first step with penalties, then kept up to date. */
  seen: Map<number, number> | null;
  /** History positions folded into `seen`. */
  seenLength: number;
}

const emptyBook = (): SlotBook => ({ history: [], lastLogits: null, seen: null, seenLength: 0 });

/** Folds positions [book.seenLength, end of this chunk) into the seen counts (this step's tokens included). */
function seenThrough(book: SlotBook, s: ScheduledSequence): SeenTokenCounts {
  const seen = (book.seen ??= new Map());
  const end = s.startPosition + s.tokens.length;
  for (let pos = book.seenLength; pos < end; pos++) {
    const t = pos < book.history.length ? book.history[pos]! : s.tokens[pos - s.startPosition]!;
    const count = seen.get(t) ?? 0;
    seen.set(t, pos >= s.promptLength ? count + 1 : count);
  }
  book.seenLength = end;
  return seen;
}

/** Bytes of one state slot as the native engine stores it: fp32 conv (3 taps) + fp32 SSM state. */
export function cudaStateSlotBytes(d: Zamba2Dims): number {
  return d.numLayers * (3 * d.convDim * 4 + d.nMambaHeads * d.mambaHeadDim * d.mambaDState * 4);
}

/** Bytes of one 16-token KV page over all attention layers, bf16. */
export function cudaKvPageBytes(d: Zamba2Dims): number {
  return d.hybridLayerIds.length * 2 * PAGE_TOKENS * d.numAttentionHeads * d.attentionHeadDim * 2;
}

export class CudaEngine implements Engine {
  private books: SlotBook[] = [];
  private cacheReady = false;
  private closed = false;
  private readonly seed: number;
  private readonly hostSampling: boolean;

  constructor(
    private readonly addon: Zamba2CudaAddon,
    private readonly handle: NativeEngineHandle,
    private readonly dims: Zamba2Dims,
    private readonly description: EngineDescription,
    seed: number,
    hostSampling = process.env.ZAMBA2_HOST_SAMPLING === '1',
  ) {
    this.seed = seed;
    this.hostSampling = hostSampling;
  }

  /** Builds the description once the weights are on the GPU (the default budget needs free memory). */
  static describeFor(dims: Zamba2Dims, device: CudaDeviceInfo, opts: CudaEngineOptions, maxModelLen: number, maxTokens: number, maxSeqs: number): EngineDescription {
    return {
      kind: 'cuda',
      modelId: opts.modelId ?? 'zamba2',
      dtype: 'bfloat16',
      vocabSize: dims.vocabSize,
      maxModelLen,
      mambaLayerCount: dims.numLayers,
      attentionLayerCount: dims.hybridLayerIds.length,
      stateSlotBytes: cudaStateSlotBytes(dims),
      kvPageBytes: cudaKvPageBytes(dims),
      tokensPerPage: PAGE_TOKENS,
      maxTokensPerStep: maxTokens,
      maxSequencesPerStep: maxSeqs,
      cacheBudgetBytes: opts.cacheBudgetBytes ?? Math.floor(device.freeBytes * 0.9),
      eosTokenIds: opts.eosTokenIds ?? [dims.eosTokenId],
    };
  }

  describe(): EngineDescription {
    return this.description;
  }

  async initCache(sizes: CacheSizes): Promise<void> {
    this.requireOpen();
    if (this.cacheReady) throw new EngineError('initCache called twice', 'cache_initialized', false);
    const d = this.description;
    const need = sizes.slotCount * d.stateSlotBytes + sizes.pageCount * d.kvPageBytes;
    if (need > d.cacheBudgetBytes) {
      throw new EngineError(`cache sizes need ${need} bytes, budget is ${d.cacheBudgetBytes}`, 'cache_over_budget', false);
    }
    try {
      this.addon.initCache(this.handle, sizes.slotCount, sizes.pageCount);
    } catch (err) {
      throw new EngineError(`CUDA initCache failed: ${(err as Error).message}`, 'cache_alloc_failed', false, { cause: err });
    }
    this.books = Array.from({ length: sizes.slotCount }, emptyBook);
    this.cacheReady = true;
  }

  async copySlot(src: number, dst: number): Promise<void> {
    this.requireCache();
    const from = this.books[src];
    if (from === undefined || this.books[dst] === undefined) throw new EngineError(`copySlot ${src} -> ${dst}: slot out of range`, 'slot_out_of_range', false);
    this.addon.copySlot(this.handle, src, dst);
    this.books[dst] = { history: from.history.slice(), lastLogits: from.lastLogits, seen: from.seen && new Map(from.seen), seenLength: from.seenLength };
  }

  async step(plan: StepPlan): Promise<StepResult> {
    this.requireCache();
    for (const slot of plan.resetSlots) {
      if (this.books[slot] === undefined) throw new EngineError(`reset slot ${slot} out of range`, 'slot_out_of_range', false);
      this.books[slot] = emptyBook();
    }
    this.validate(plan);
    let packedStep;
    let sampling: PackedSampling | null = null;
    try {
      packedStep = packStep(plan, this.dims.hybridLayerIds.length > 0, this.hostSampling);
      if (!this.hostSampling) {
        sampling = packSampling(plan, packedStep, { engineSeed: this.seed, seen: (i) => seenThrough(this.books[plan.sequences[i]!.slot]!, plan.sequences[i]!) });
      }
    } catch (err) {
      throw new EngineError(`step ${plan.stepId}: ${(err as Error).message}`, 'bad_plan', false);
    }
    let out: NativeStepOutput;
    try {
      out = await this.addon.step(this.handle, packedStep.packed, sampling !== null && sampling.words.length > 0 ? sampling.words : null);
    } catch (err) {
      const msg = (err as Error).message;
      // A sticky CUDA error (bad address, launch failure) poisons the context: not retryable.
      const fatal = /illegal|launch failure|unspecified|ECC|uncorrectable/i.test(msg);
      throw new EngineError(`cuda step ${plan.stepId} failed: ${msg}`, 'engine_failed', !fatal, { cause: err });
    }
    const outputs = plan.sequences.map((s, i) => this.finishSequence(s, out, packedStep.rowStart[i]!, packedStep.rowCount[i]!, sampling?.rowOfSequence[i] ?? -1));
    return { stepId: plan.stepId, outputs, computeMs: out.computeMs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.addon.destroy(this.handle);
  }

  private requireOpen(): void {
    if (this.closed) throw new EngineError('engine is closed', 'engine_closed', false);
  }

  private requireCache(): void {
    this.requireOpen();
    if (!this.cacheReady) throw new EngineError('step before initCache', 'cache_not_initialized', false);
  }

  private validate(plan: StepPlan): void {
    const d = this.description;
    let tokens = 0;
    const seenSeq = new Set<number>();
    const seenSlot = new Set<number>();
    for (const s of plan.sequences) {
      tokens += s.tokens.length;
      if (seenSeq.has(s.seqId)) throw new EngineError(`sequence ${s.seqId} appears twice in step ${plan.stepId}`, 'duplicate_sequence', false);
      seenSeq.add(s.seqId);
      if (seenSlot.has(s.slot)) throw new EngineError(`slot ${s.slot} used by two sequences in step ${plan.stepId}`, 'duplicate_slot', false);
      seenSlot.add(s.slot);
      if (s.tokens.length === 0) throw new EngineError(`sequence ${s.seqId} has no tokens`, 'empty_chunk', false);
      if (s.startPosition + s.tokens.length > d.maxModelLen) throw new EngineError(`sequence ${s.seqId} exceeds max model length`, 'too_long', false);
      const book = this.books[s.slot];
      if (book === undefined) throw new EngineError(`state slot ${s.slot} out of range`, 'slot_out_of_range', false);
      if (book.history.length !== s.startPosition) {
        throw new EngineError(`sequence ${s.seqId}: start position ${s.startPosition} but slot ${s.slot} holds ${book.history.length} tokens`, 'position_mismatch', false);
      }
      for (const t of s.tokens) if (t < 0 || t >= d.vocabSize) throw new EngineError(`token id ${t} out of vocabulary`, 'bad_token', false);
    }
    if (tokens > d.maxTokensPerStep) throw new EngineError(`step carries ${tokens} tokens > ${d.maxTokensPerStep}`, 'step_too_large', false);
    if (plan.sequences.length > d.maxSequencesPerStep) throw new EngineError('step carries too many sequences', 'step_too_large', false);
  }

  /** `gpuRow`: the sequence's row of the GPU sampling outputs, or -1. */
  private finishSequence(s: ScheduledSequence, out: NativeStepOutput, rowStart: number, rowCount: number, gpuRow: number): SequenceOutput {
    const V = this.dims.vocabSize;
    const T = s.tokens.length;
    const book = this.books[s.slot]!;
    const row = (r: number): Float32Array | null => (out.logits === null ? null : out.logits.subarray((rowStart + r) * V, (rowStart + r + 1) * V));
    // Output rows cover either the whole chunk or only its last token.
    const lastRow = rowCount > 0 ? row(rowCount - 1) : null;

    let promptLogprobs: TokenLogprob[] | null = null;
    if (s.promptLogprobs !== null) {
      promptLogprobs = [];
      for (let i = 0; i < T; i++) {
        const prev = i === 0 ? (s.startPosition > 0 ? book.lastLogits : null) : row(i - 1);
        if (prev !== null) promptLogprobs.push(tokenLogprob(logSoftmax(prev), s.tokens[i]!, s.promptLogprobs));
      }
    }
    for (const t of s.tokens) book.history.push(t);
    book.lastLogits = lastRow !== null ? lastRow.slice() : null;

    let token = -1;
    let logprobs: TokenLogprob | null = null;
    if (s.sample) {
      const p = s.sampling;
      const r = rowStart + rowCount - 1;
      if (gpuRow >= 0) {
        token = out.sampledToken[gpuRow]!;
        if (p.logprobs !== null) logprobs = gpuTokenLogprob(out, gpuRow, token, p.logprobs);
      } else if (isGpuGreedy(p) || lastRow === null) {
        token = out.argmax[r]!;
        if (p.logprobs !== null) {
          // logit(argmax) is the row max: logprob = max - lse, no host row needed
          logprobs = { tokenId: token, logprob: out.maxLogit[r]! - out.lse[r]!, top: null };
        }
      } else {
        const position = s.startPosition + T;
        const key = p.seed ?? this.seed * 1_000_003 + s.seqId;
        token = sampleFromLogits(lastRow, p, { tokens: book.history, promptLength: s.promptLength }, uniformAt(key, position));
        if (p.logprobs !== null) logprobs = tokenLogprob(logSoftmax(lastRow), token, p.logprobs);
      }
    }
    const result: SequenceOutput = { seqId: s.seqId, token, logprobs, promptLogprobs };
    if (s.returnLogits === true && out.logits !== null) result.logits = out.logits.slice(rowStart * V, (rowStart + T) * V);
    return result;
  }
}

/** The GPU sampler's logprob of the drawn token and its top N (ids -1 mark a vocabulary smaller than N). */
function gpuTokenLogprob(out: NativeStepOutput, row: number, tokenId: number, n: number): TokenLogprob {
  let top = null;
  if (n > 0) {
    const base = row * SAMPLE_MAX_TOP;
    let k = 0;
    while (k < n && out.topIds[base + k]! >= 0) k++;
    top = { tokenIds: out.topIds.slice(base, base + k), logprobs: out.topLogprobs.slice(base, base + k) };
  }
  return { tokenId, logprob: out.sampledLogprob[row]!, top };
}

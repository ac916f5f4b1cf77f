/**
 * FakeEngine: the scheduler's test double and a contract checker for the engine seam.
 *
 * Tokens are a deterministic function of a sequence's own history (a rolling hash kept in its
 * state slot, exactly where a real engine keeps Mamba2 state), so outputs never depend on batch
 * composition, chunking or preemption-and-recompute. KV pages hold, per position, the hash of the
 * prefix that wrote them; every step re-reads the whole prefix through the page table and checks it
 * against the slot's history, so a wrong page table, a page freed while still shared, or a missing
 * slot reset/copy is caught as an EngineError instead of silently producing other text.
 *
 * Invariants checked (each throws EngineError with a `code`):
 *   slot used before reset (or before being the target of copySlot), slot used by two live
 *   sequences, a sequence moving to another slot, startPosition ≠ tokens the slot has consumed,
 *   a page written by two live sequences, a page table too short for the chunk's positions, a page
 *   read back with another sequence's data, ids out of range, too many tokens or sequences in one
 *   step, duplicate seqIds in one step, steps out of order, use before initCache / after close.
 *
 * Slot state also carries the token history (for penalties), so copySlot forks it along with the
 * "Mamba state"; a real engine keeps the same per-slot bookkeeping.
 */
import { setImmediate as setImmediatePromise, setTimeout as setTimeoutPromise } from 'node:timers/promises';
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
import {
  advanceHistoryHash,
  denseLogits,
  mix32,
  nextTokenDistribution,
  sampleToken,
  tokenLogprob,
  unitInterval,
  type FakeModelConfig,
} from './fake-model.js';

export interface FakeEngineOptions {
  modelId?: string;
  /** Default 32000 (Llama/Mistral vocabulary, so fake tokens detokenize with the real tokenizer). */
  vocabSize?: number;
  /** Default 4096. */
  maxModelLen?: number;
  /** Wall time each step takes (a timer, never a busy loop); 0 = yield once with setImmediate. Default 0. */
  stepLatencyMs?: number;
  /** Default 2 (Llama `</s>`). */
  eosTokenId?: number;
  /** Chance (decided by the history hash, so deterministic) that eos is the greedy choice at a position. Default 0. */
  eosProbability?: number;
  /** Seed of the whole fake model. Default 0. */
  seed?: number;
  /** Bytes per state slot reported by describe(). Default 1 MiB. */
  stateSlotBytes?: number;
  /** Bytes per KV page reported by describe(). Default 64 KiB. */
  kvPageBytes?: number;
  /** Cache budget reported by describe(). Default: 256 slots + 16384 pages. */
  cacheBudgetBytes?: number;
  /** Default 8192. */
  maxTokensPerStep?: number;
  /** Default 256. */
  maxSequencesPerStep?: number;
  /** Called before each step; return true or an Error to make that step reject (fault tests). */
  failOnStep?: (plan: StepPlan) => boolean | Error | undefined;
}

const TOKENS_PER_PAGE = 16;
const NO_SEQ = -1;

interface FakeSlot {
  /** dirty: must be reset (or copied into) before use; ready: reset/copied, unowned; bound: owned by `seqId`. */
  status: 'dirty' | 'ready' | 'bound';
  seqId: number;
  hash: number;
  /** Every token consumed, in order (history for penalties and the KV check). */
  history: number[];
  /** prefixHashes[p] = history hash after consuming history[p]. */
  prefixHashes: number[];
}

export class FakeEngine implements Engine {
  private readonly description: EngineDescription;
  private readonly model: FakeModelConfig;
  private readonly stepLatencyMs: number;
  private readonly seed: number;
  private readonly failOnStep: FakeEngineOptions['failOnStep'];
  private slots: FakeSlot[] = [];
  /** Per KV position: the prefix hash written there. */
  private pageHashes = new Uint32Array(0);
  /** Live sequence that last wrote each page, or NO_SEQ. */
  private pageWriter = new Int32Array(0);
  private readonly slotOfSeq = new Map<number, number>();
  private readonly pagesWrittenBySeq = new Map<number, Set<number>>();
  private lastStepId = -Infinity;
  private initialized = false;
  private closed = false;
  /** Steps run, for tests. */
  stepsRun = 0;

  constructor(options: FakeEngineOptions = {}) {
    const stateSlotBytes = options.stateSlotBytes ?? 1 << 20;
    const kvPageBytes = options.kvPageBytes ?? 1 << 16;
    const eosTokenId = options.eosTokenId ?? 2;
    const vocabSize = options.vocabSize ?? 32000;
    if (!(vocabSize >= 16)) throw new Error('FakeEngine: vocabSize must be at least 16');
    this.description = {
      kind: 'fake',
      modelId: options.modelId ?? 'fake-zamba2',
      dtype: 'float32',
      vocabSize,
      maxModelLen: options.maxModelLen ?? 4096,
      mambaLayerCount: 2,
      attentionLayerCount: 1,
      stateSlotBytes,
      kvPageBytes,
      tokensPerPage: TOKENS_PER_PAGE,
      maxTokensPerStep: options.maxTokensPerStep ?? 8192,
      maxSequencesPerStep: options.maxSequencesPerStep ?? 256,
      cacheBudgetBytes: options.cacheBudgetBytes ?? 256 * stateSlotBytes + 16384 * kvPageBytes,
      eosTokenIds: [eosTokenId],
    };
    this.model = {
      vocabSize,
      firstRegularTokenId: Math.min(3, eosTokenId + 1),
      candidateCount: 8,
      eosTokenIds: [eosTokenId],
      eosProbability: options.eosProbability ?? 0,
    };
    this.stepLatencyMs = options.stepLatencyMs ?? 0;
    this.seed = (options.seed ?? 0) >>> 0;
    this.failOnStep = options.failOnStep;
  }

  describe(): EngineDescription {
    return { ...this.description, eosTokenIds: [...this.description.eosTokenIds] };
  }

  async initCache(sizes: CacheSizes): Promise<void> {
    if (this.initialized) throw new EngineError('initCache called twice', 'FAKE_ALREADY_INITIALIZED', false);
    if (!(sizes.slotCount > 0 && sizes.pageCount > 0)) throw new EngineError(`bad cache sizes ${JSON.stringify(sizes)}`, 'FAKE_BAD_SIZES', false);
    const { slotCount, pageCount } = sizes;
    const budget = slotCount * this.description.stateSlotBytes + pageCount * this.description.kvPageBytes;
    if (budget > this.description.cacheBudgetBytes) {
      throw new EngineError(`cache sizes need ${budget} bytes, budget is ${this.description.cacheBudgetBytes}`, 'FAKE_OVER_BUDGET', false);
    }
    this.slots = Array.from({ length: slotCount }, () => ({ status: 'dirty', seqId: NO_SEQ, hash: 0, history: [], prefixHashes: [] }));
    this.pageHashes = new Uint32Array(pageCount * TOKENS_PER_PAGE);
    this.pageWriter = new Int32Array(pageCount).fill(NO_SEQ);
    this.initialized = true;
  }

  /** Slots and pages as this engine sees them (tests). */
  get cacheSizes(): CacheSizes {
    return { slotCount: this.slots.length, pageCount: this.pageWriter.length };
  }

  /** Live sequences the engine still keeps bookkeeping for (tests: zero after every release). */
  get liveSequenceCount(): number {
    return this.slotOfSeq.size;
  }

  async copySlot(src: number, dst: number): Promise<void> {
    this.checkUsable();
    const from = this.slotAt(src);
    const to = this.slotAt(dst);
    if (src === dst) throw new EngineError(`copySlot(${src}, ${dst}): same slot`, 'FAKE_BAD_COPY');
    if (from.status === 'dirty') throw new EngineError(`copySlot from slot ${src}, which holds no state`, 'FAKE_BAD_COPY');
    // The previous owner of dst may not have been released to us yet (releases travel in the next
    // plan); from now on dst belongs to nobody until a sequence is scheduled on it.
    to.status = 'ready';
    to.seqId = NO_SEQ;
    to.hash = from.hash;
    to.history = from.history.slice();
    to.prefixHashes = from.prefixHashes.slice();
  }

  async step(plan: StepPlan): Promise<StepResult> {
    this.checkUsable();
    const injected = this.failOnStep?.(plan);
    if (injected) {
      await this.wait();
      throw injected instanceof Error ? injected : new EngineError(`injected failure at step ${plan.stepId}`, 'FAKE_INJECTED');
    }
    const started = performance.now();
    this.checkPlanShape(plan);
    for (const seqId of plan.releasedSeqIds) this.release(seqId);
    for (const slot of plan.resetSlots) this.reset(slot);
    const outputs: SequenceOutput[] = [];
    for (const seq of plan.sequences) outputs.push(this.run(seq));
    this.stepsRun++;
    const computeMs = performance.now() - started;
    await this.wait();
    return { stepId: plan.stepId, outputs, computeMs };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private async wait(): Promise<void> {
    if (this.stepLatencyMs > 0) await setTimeoutPromise(this.stepLatencyMs);
    else await setImmediatePromise();
  }

  private checkUsable(): void {
    if (this.closed) throw new EngineError('engine is closed', 'FAKE_CLOSED', false);
    if (!this.initialized) throw new EngineError('initCache was not called', 'FAKE_NOT_INITIALIZED', false);
  }

  private slotAt(slot: number): FakeSlot {
    const s = this.slots[slot];
    if (!Number.isInteger(slot) || s === undefined) throw new EngineError(`slot ${slot} out of range [0, ${this.slots.length})`, 'FAKE_BAD_SLOT');
    return s;
  }

  private checkPlanShape(plan: StepPlan): void {
    if (!(plan.stepId > this.lastStepId)) throw new EngineError(`step ${plan.stepId} after step ${this.lastStepId}`, 'FAKE_STEP_ORDER');
    this.lastStepId = plan.stepId;
    const d = this.description;
    if (plan.sequences.length > d.maxSequencesPerStep) {
      throw new EngineError(`${plan.sequences.length} sequences in one step, max ${d.maxSequencesPerStep}`, 'FAKE_TOO_MANY_SEQUENCES');
    }
    let tokens = 0;
    const seen = new Set<number>();
    for (const seq of plan.sequences) {
      tokens += seq.tokens.length;
      if (seen.has(seq.seqId)) throw new EngineError(`sequence ${seq.seqId} twice in step ${plan.stepId}`, 'FAKE_DUPLICATE_SEQUENCE');
      seen.add(seq.seqId);
      if (seq.tokens.length === 0) throw new EngineError(`sequence ${seq.seqId} has no tokens`, 'FAKE_EMPTY_CHUNK');
    }
    if (tokens > d.maxTokensPerStep) throw new EngineError(`${tokens} tokens in one step, max ${d.maxTokensPerStep}`, 'FAKE_TOO_MANY_TOKENS');
  }

  private release(seqId: number): void {
    const slot = this.slotOfSeq.get(seqId);
    if (slot === undefined) return; // never scheduled, or already released: nothing kept
    this.slotOfSeq.delete(seqId);
    const s = this.slots[slot]!;
    if (s.seqId === seqId) {
      s.status = 'dirty';
      s.seqId = NO_SEQ;
    }
    for (const page of this.pagesWrittenBySeq.get(seqId) ?? []) if (this.pageWriter[page] === seqId) this.pageWriter[page] = NO_SEQ;
    this.pagesWrittenBySeq.delete(seqId);
  }

  private reset(slot: number): void {
    const s = this.slotAt(slot);
    if (s.status === 'bound') throw new EngineError(`reset of slot ${slot}, still used by live sequence ${s.seqId}`, 'FAKE_RESET_LIVE_SLOT');
    s.status = 'ready';
    s.hash = mix32(this.seed, 0x5107);
    s.history = [];
    s.prefixHashes = [];
  }

  private bind(seq: ScheduledSequence): FakeSlot {
    const s = this.slotAt(seq.slot);
    const known = this.slotOfSeq.get(seq.seqId);
    if (known !== undefined) {
      if (known !== seq.slot) throw new EngineError(`sequence ${seq.seqId} moved from slot ${known} to ${seq.slot}`, 'FAKE_SLOT_CHANGED');
      if (s.seqId !== seq.seqId) throw new EngineError(`slot ${seq.slot} of sequence ${seq.seqId} was overwritten`, 'FAKE_SLOT_OVERWRITTEN');
      return s;
    }
    if (s.status === 'bound') throw new EngineError(`slot ${seq.slot} used by live sequences ${s.seqId} and ${seq.seqId}`, 'FAKE_SLOT_SHARED');
    if (s.status === 'dirty') throw new EngineError(`slot ${seq.slot} used by sequence ${seq.seqId} before reset`, 'FAKE_SLOT_NOT_RESET');
    s.status = 'bound';
    s.seqId = seq.seqId;
    this.slotOfSeq.set(seq.seqId, seq.slot);
    this.pagesWrittenBySeq.set(seq.seqId, new Set());
    return s;
  }

  private pageFor(seq: ScheduledSequence, position: number): number {
    const page = seq.pageTable[Math.floor(position / TOKENS_PER_PAGE)];
    if (page === undefined) {
      throw new EngineError(`sequence ${seq.seqId}: page table of ${seq.pageTable.length} pages does not cover position ${position}`, 'FAKE_PAGE_TABLE_SHORT');
    }
    if (page < 0 || page >= this.pageWriter.length) throw new EngineError(`page ${page} out of range [0, ${this.pageWriter.length})`, 'FAKE_BAD_PAGE');
    return page;
  }

  private run(seq: ScheduledSequence): SequenceOutput {
    const s = this.bind(seq);
    const vocab = this.model.vocabSize;
    if (seq.startPosition !== s.history.length) {
      throw new EngineError(`sequence ${seq.seqId}: startPosition ${seq.startPosition}, but its slot has consumed ${s.history.length} tokens`, 'FAKE_BAD_POSITION');
    }
    const end = seq.startPosition + seq.tokens.length;
    this.pageFor(seq, end - 1);
    const written = this.pagesWrittenBySeq.get(seq.seqId)!;
    const promptLogprobs: TokenLogprob[] | null = seq.promptLogprobs === null ? null : [];
    const logits = seq.returnLogits ? new Float32Array(seq.tokens.length * vocab) : undefined;

    for (let i = 0; i < seq.tokens.length; i++) {
      const token = seq.tokens[i]!;
      const position = seq.startPosition + i;
      if (!(token >= 0 && token < vocab)) throw new EngineError(`token ${token} out of vocabulary`, 'FAKE_BAD_TOKEN');
      if (promptLogprobs && position > 0) {
        promptLogprobs.push(tokenLogprob(this.model, nextTokenDistribution(this.model, s.hash), token, seq.promptLogprobs));
      }
      const page = this.pageFor(seq, position);
      const writer = this.pageWriter[page]!;
      if (writer !== NO_SEQ && writer !== seq.seqId && this.slotOfSeq.has(writer)) {
        throw new EngineError(`page ${page} written by live sequences ${writer} and ${seq.seqId}`, 'FAKE_PAGE_SHARED');
      }
      this.pageWriter[page] = seq.seqId;
      written.add(page);
      s.hash = advanceHistoryHash(s.hash, token, position);
      s.history.push(token);
      s.prefixHashes.push(s.hash);
      this.pageHashes[page * TOKENS_PER_PAGE + (position % TOKENS_PER_PAGE)] = s.hash;
      if (logits) denseLogits(this.model, nextTokenDistribution(this.model, s.hash), logits, i * vocab);
    }

    // Attention reads every earlier position through the page table: check it holds our prefix.
    for (let p = 0; p < seq.startPosition; p++) {
      const page = this.pageFor(seq, p);
      if (this.pageHashes[page * TOKENS_PER_PAGE + (p % TOKENS_PER_PAGE)] !== s.prefixHashes[p]) {
        throw new EngineError(`sequence ${seq.seqId}: page ${page} holds other data at position ${p}`, 'FAKE_PAGE_CORRUPT');
      }
    }

    let token = -1;
    let logprobs: TokenLogprob | null = null;
    if (seq.sample) {
      const dist = nextTokenDistribution(this.model, s.hash);
      const streamSeed = seq.sampling.seed !== null ? mix32(0x5eed, seq.sampling.seed >>> 0) : mix32(this.seed, seq.seqId);
      token = sampleToken(this.model, dist, seq.sampling, s.history, seq.promptLength, unitInterval(mix32(streamSeed, s.hash)));
      if (seq.sampling.logprobs !== null) logprobs = tokenLogprob(this.model, dist, token, seq.sampling.logprobs);
    }
    const out: SequenceOutput = { seqId: seq.seqId, token, logprobs, promptLogprobs };
    if (logits) out.logits = logits;
    return out;
  }
}

/**
 * Scheduler: continuous batching over the engine seam, in the manner of vLLM v1.
 *
 * Every sequence carries `tokens` (prompt + output known so far) and `computed` (positions in its
 * state slot and KV pages); each step only closes that gap, so there are no prefill/decode modes:
 * a decode is a gap of one, a prefill chunk a larger gap, a preempted sequence recomputes from 0.
 * One step = schedule() (synchronous; builds the StepPlan) → await engine.step(plan) → update()
 * (emit tokens, stop checks, n > 1 forks). Only this loop touches the cache and the engine; submit,
 * abort and finish run on the same thread between steps and only mark, free and wake.
 *
 * Scheduling order (step-scheduling.ts): every running decode gets 1 token, then running prefill
 * chunks, then (if nothing was preempted this step) waiting sequences in FCFS order while a state
 * slot, the KV pages of their first chunk and the token budget allow. When KV pages run out, the
 * newest running sequence is preempted: its slot and pages are freed and it goes back to the front
 * of the waiting queue to recompute prompt + output so far; its stream continues where it stopped.
 * Whether a request may be queued at all is admission.ts.
 *
 * n > 1: the first sequence prefills the prompt up to the last page boundary before its end, then
 * each sibling gets a fresh slot (engine.copySlot) and shares those full pages by reference; every
 * sibling computes the short tail (< 16 tokens + 1) in pages of its own and samples on its own, so no
 * page is ever written by two live sequences and no page copy is needed.
 */
import type { Engine, EngineDescription, StepResult } from '../engine/engine.js';
import { EngineError } from '../engine/engine.js';
import { HybridCache, planCacheSizes } from '../cache/index.js';
import { checkAdmissible } from './admission.js';
import { RequestState, Sequence } from './request-state.js';
import { buildStepPlan, summarizeStep, type ScheduledChunk } from './step-plan.js';
import { scheduleStep } from './step-scheduling.js';
import {
  SchedulerRejection,
  type FinishReason,
  type GenerationHandle,
  type GenerationRequest,
  type GenerationScheduler,
  type SchedulerObserver,
  type SchedulerOptions,
  type SchedulerStats,
} from './types.js';

/** pino-compatible subset. */
export interface SchedulerLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SchedulerDeps {
  logger?: SchedulerLogger;
  observer?: SchedulerObserver;
}

const silentLogger: SchedulerLogger = { debug() {}, info() {}, warn() {}, error() {} };


type LoopState = 'new' | 'serving' | 'draining' | 'closed' | 'failed';

export class Scheduler implements GenerationScheduler {
  private readonly logger: SchedulerLogger;
  private readonly observer: SchedulerObserver | undefined;
  private description: EngineDescription | null = null;
  private cache: HybridCache | null = null;
  private state: LoopState = 'new';
  private readonly waiting: Sequence[] = [];
  /** In admission order: the last one is the newest (first to be preempted). */
  private readonly running: Sequence[] = [];
  private readonly requests = new Set<RequestState>();
  /** seqIds the engine must forget in the next plan (finished, aborted, failed, preempted). */
  private released: number[] = [];
  private nextSeqId = 0;
  private stepId = 0;
  private preemptedTotal = 0;
  private wakeUp: (() => void) | null = null;
  /** Set by wake() when the loop was not sleeping, so a wake during schedule() is not lost. */
  private wakePending = false;
  private idleWaiters: Array<() => void> = [];
  private loopDone: Promise<void> | null = null;
  /** Moving average of a request's life, for Retry-After. */
  private requestSecondsEma = 1;

  constructor(
    private readonly engine: Engine,
    private readonly options: SchedulerOptions,
    deps: SchedulerDeps = {},
  ) {
    for (const key of ['maxNumSeqs', 'maxNumBatchedTokens', 'maxModelLen'] as const) {
      if (!(Number.isInteger(options[key]) && options[key] > 0)) throw new RangeError(`SchedulerOptions.${key} must be a positive integer`);
    }
    if (!(Number.isInteger(options.maxWaiting) && options.maxWaiting >= 0)) throw new RangeError('SchedulerOptions.maxWaiting must be an integer ≥ 0');
    this.logger = deps.logger ?? silentLogger;
    this.observer = deps.observer;
  }

  /** Describe the engine, size and allocate the cache pools, start the loop. Call once. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('Scheduler.start called twice');
    const description = this.engine.describe();
    const sizes = planCacheSizes(description, { maxNumSeqs: this.options.maxNumSeqs, cacheFraction: this.options.cacheFraction });
    await this.engine.initCache(sizes);
    this.description = description;
    this.cache = new HybridCache(sizes, description.tokensPerPage);
    this.state = 'serving';
    this.logger.info(
      {
        slotCount: sizes.slotCount,
        pageCount: sizes.pageCount,
        kvTokens: sizes.pageCount * description.tokensPerPage,
        stepTokenBudget: this.tokenBudget,
        maxModelLen: this.maxModelLen,
      },
      'scheduler capacity',
    );
    if (this.tokenBudget < sizes.slotCount) {
      this.logger.warn({ stepTokenBudget: this.tokenBudget, slotCount: sizes.slotCount }, 'step token budget below the slot count: some decodes will wait a step');
    }
    this.loopDone = this.loop().catch((err: unknown) => {
      this.logger.error({ err }, 'scheduler loop crashed');
      this.failEverything(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** Stop the loop after the current step; every unfinished request ends with 'abort'. The engine stays open (its owner closes it). */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasStarted = this.state !== 'new';
    this.state = 'closed';
    for (const request of [...this.requests]) this.abortRequest(request);
    this.wake();
    if (wasStarted) await this.loopDone;
    this.notifyIdle();
  }

  async drain(deadlineMs: number): Promise<void> {
    if (this.state === 'serving') this.state = 'draining';
    if (this.requests.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), Math.max(0, deadlineMs))));
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      this.logger.warn({ unfinished: this.requests.size }, 'drain deadline passed, aborting the rest');
      for (const request of [...this.requests]) this.abortRequest(request);
    }
  }

  stats(): SchedulerStats {
    const cache = this.cache;
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      preemptedTotal: this.preemptedTotal,
      slotsUsed: cache?.slots.usedCount ?? 0,
      slotsTotal: cache?.slots.slotCount ?? 0,
      pagesUsed: cache?.pages.usedCount ?? 0,
      pagesTotal: cache?.pages.pageCount ?? 0,
    };
  }

  /** A non-retryable engine error ended this scheduler: /health and /ready report it. */
  get failed(): boolean {
    return this.state === 'failed';
  }

  /** Sequences still holding cache memory (tests: zero after the load). */
  get liveSequenceMemory(): number {
    return this.cache?.sequenceCount ?? 0;
  }

  submit(request: GenerationRequest): GenerationHandle {
    if (this.state === 'new') throw new Error('Scheduler.submit before start()');
    if (this.state === 'failed') throw new SchedulerRejection('the engine failed and cannot serve any more; the server needs a restart', 'engine_failed');
    if (this.state !== 'serving') throw new SchedulerRejection('server is shutting down', 'shutting_down');
    const cache = this.cache!;
    checkAdmissible(request, cache, {
      maxModelLen: this.maxModelLen,
      maxWaiting: this.options.maxWaiting,
      waitingCount: this.waiting.length,
      requestSecondsEma: this.requestSecondsEma,
    });
    const promptLength = request.promptTokens.length;

    const state = new RequestState(request, this.description!.eosTokenIds, {
      onAbort: (s) => this.abortRequest(s),
      onFinishIndex: (s, index) => {
        const seq = s.sequences[index];
        if (seq) this.finishSequence(seq, 'stop');
      },
    });
    // Fork at the last page boundary strictly before the prompt's end, so every sibling still has
    // 1..16 prompt tokens of its own to compute (and sample from) in a page nobody else writes.
    const forkAt = Math.floor((promptLength - 1) / cache.tokensPerPage) * cache.tokensPerPage;
    const fork = request.n > 1 && (forkAt > 0 || request.maxTokens === 0);
    for (let index = 0; index < request.n; index++) {
      const seq = new Sequence(this.nextSeqId++, index, state, index === 0 || !fork ? 'waiting' : 'pending-fork');
      state.sequences.push(seq);
      if (seq.status === 'waiting') this.waiting.push(seq);
    }
    if (fork && request.maxTokens > 0) state.sequences[0]!.forkAt = forkAt;
    this.requests.add(state);
    this.wake();
    return state;
  }

  private get maxModelLen(): number {
    return Math.min(this.options.maxModelLen, this.description!.maxModelLen);
  }

  private get tokenBudget(): number {
    return Math.min(this.options.maxNumBatchedTokens, this.description!.maxTokensPerStep);
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    if (w) w();
    else this.wakePending = true;
  }

  /** Idle until submit/abort/finish/close calls wake(); no polling. */
  private async sleep(): Promise<void> {
    if (this.wakePending) {
      this.wakePending = false;
      return;
    }
    await new Promise<void>((resolve) => (this.wakeUp = resolve));
  }

  private notifyIdle(): void {
    if (this.requests.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async loop(): Promise<void> {
    while (this.state === 'serving' || this.state === 'draining') {
      this.wakePending = false;
      const chunks = this.running.length > 0 || this.waiting.length > 0 ? this.schedule() : [];
      if (chunks.length === 0) {
        await this.sleep();
        continue;
      }
      const cache = this.cache!;
      const plan = buildStepPlan(++this.stepId, chunks, cache, this.released);
      this.released = [];
      const startedMs = performance.now();
      let result: StepResult;
      try {
        result = await this.engine.step(plan);
        if (result.outputs.length !== plan.sequences.length || result.outputs.some((o, i) => o.seqId !== plan.sequences[i]!.seqId)) {
          throw new EngineError(`engine returned outputs that do not match the plan of step ${plan.stepId}`, 'ENGINE_BAD_RESULT');
        }
      } catch (err) {
        this.failStep(chunks, err);
        continue;
      }
      const summary = summarizeStep(chunks);
      const durationMs = performance.now() - startedMs;
      this.observer?.onStep({ durationMs, ...summary });
      this.logger.debug(
        {
          stepId: plan.stepId,
          running: this.running.length,
          waiting: this.waiting.length,
          slotsFree: cache.slots.freeCount,
          pagesFree: cache.pages.freeCount,
          ...summary,
          durationMs: Math.round(durationMs * 1000) / 1000,
        },
        'step',
      );
      await this.update(chunks, result);
    }
  }

  /** Pick this step's chunks (step-scheduling.ts); preemptions and oversize finishes come back through the callbacks. */
  private schedule(): ScheduledChunk[] {
    const cache = this.cache!;
    const { chunks, preempted } = scheduleStep({
      cache,
      running: this.running,
      waiting: this.waiting,
      tokenBudget: this.tokenBudget,
      preempt: (seq) => this.preempt(seq),
      finishOutgrown: (seq, tokens) => {
        this.logger.warn({ seqId: seq.seqId, tokens, pageCount: cache.pages.pageCount }, 'sequence outgrew the KV cache');
        this.finishSequence(seq, 'length');
      },
    });
    if (preempted > 0) this.observer?.onPreempt?.(preempted);
    return chunks;
  }

  /** Apply a step's outputs: advance positions, gather prompt logprobs, fork, emit tokens, stop. */
  private async update(chunks: ScheduledChunk[], result: StepResult): Promise<void> {
    const live = (c: ScheduledChunk): boolean => c.seq.status === 'running';
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      if (!live(c)) continue; // aborted or finished while the step ran
      c.seq.computed = c.start + c.count;
      const promptLogprobs = result.outputs[i]!.promptLogprobs;
      if (c.wantsPromptLogprobs && promptLogprobs) c.seq.request.recordPromptLogprobs(c.start, promptLogprobs);
    }
    for (const c of chunks) if (live(c) && c.seq.forkAt > 0 && c.seq.computed === c.seq.forkAt) await this.forkSiblings(c.seq);
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const seq = c.seq;
      if (!live(c)) continue;
      if (c.sample) this.acceptToken(seq, result.outputs[i]!);
      else if (seq.computed === seq.tokens.length && seq.request.request.maxTokens === 0) {
        seq.request.flushPromptLogprobs();
        this.finishSequence(seq, 'length');
      }
    }
  }

  private acceptToken(seq: Sequence, output: StepResult['outputs'][number]): void {
    const request = seq.request.request;
    const token = output.token;
    seq.request.flushPromptLogprobs();
    if (seq.outputCount >= (request.minTokens ?? 0)) {
      const isEos = !request.ignoreEos && this.description!.eosTokenIds.includes(token);
      if (isEos || (request.stopTokenIds?.includes(token) ?? false)) {
        this.finishSequence(seq, 'stop', token);
        return;
      }
    }
    seq.tokens.push(token);
    seq.outputCount++;
    seq.request.push({ kind: 'token', index: seq.index, tokenId: token, logprob: output.logprobs });
    if (seq.outputCount >= request.maxTokens || seq.tokens.length >= this.maxModelLen) this.finishSequence(seq, 'length');
  }

  /** The parent reached its fork point: give each pending sibling a copy of its state and its full pages. */
  private async forkSiblings(parent: Sequence): Promise<void> {
    const cache = this.cache!;
    parent.forkAt = -1;
    const parentSlot = cache.slotOf(parent.seqId)!;
    for (const child of parent.request.sequences) {
      // The parent may have ended while a copy was awaited: finishSequence settled the rest.
      if (parent.status !== 'running') break;
      if (child.status !== 'pending-fork') continue;
      const slot = cache.fork(parent.seqId, child.seqId, parent.computed);
      if (slot === null) {
        // No slot free now: the sibling recomputes the prompt on its own when admitted.
        this.toWaitingFront(child);
        continue;
      }
      child.status = 'running';
      child.computed = parent.computed;
      this.running.push(child);
      try {
        await this.engine.copySlot(parentSlot, slot);
      } catch (err) {
        this.finishSequence(child, 'error', undefined, err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  private toWaitingFront(seq: Sequence): void {
    seq.status = 'waiting';
    seq.computed = 0;
    this.waiting.unshift(seq);
  }

  private preempt(seq: Sequence): void {
    const at = this.running.lastIndexOf(seq);
    if (at >= 0) this.running.splice(at, 1);
    this.cache!.free(seq.seqId);
    this.forget(seq);
    this.preemptedTotal++;
    this.toWaitingFront(seq);
    this.logger.debug({ seqId: seq.seqId, requestId: seq.request.requestId, tokens: seq.tokens.length }, 'preempted');
  }

  private forget(seq: Sequence): void {
    if (!seq.engineKnown) return;
    seq.engineKnown = false;
    this.released.push(seq.seqId);
  }

  /** End one sequence for any reason: free its memory, emit 'finished', settle its pending siblings. Idempotent. */
  private finishSequence(seq: Sequence, reason: FinishReason, stopTokenId?: number, error?: Error): void {
    if (seq.status === 'finished') return;
    const previous = seq.status;
    seq.status = 'finished';
    if (previous === 'running') {
      this.running.splice(this.running.indexOf(seq), 1);
    } else if (previous === 'waiting') {
      this.waiting.splice(this.waiting.indexOf(seq), 1);
    }
    this.cache?.free(seq.seqId);
    this.forget(seq);
    const state = seq.request;
    if (reason !== 'abort' && reason !== 'error') state.flushPromptLogprobsIfComplete();
    const event: { kind: 'finished'; index: number; reason: FinishReason; stopTokenId?: number; error?: Error } = { kind: 'finished', index: seq.index, reason };
    if (stopTokenId !== undefined) event.stopTokenId = stopTokenId;
    if (error) event.error = error;
    state.push(event);

    if (seq.index === 0) {
      // The parent left before forking: its siblings share its fate on error/abort or when no
      // tokens were asked for (maxTokens 0), else they go on alone (recomputing the prompt).
      seq.forkAt = -1;
      for (const sibling of state.sequences) {
        if (sibling.status !== 'pending-fork') continue;
        if (reason === 'error' || reason === 'abort') this.finishSequence(sibling, reason, undefined, error);
        else if (state.request.maxTokens === 0) this.finishSequence(sibling, 'length');
        else this.toWaitingFront(sibling);
      }
    }
    if (state.done) {
      this.requests.delete(state);
      const seconds = (performance.now() - state.submittedAtMs) / 1000;
      this.requestSecondsEma = 0.9 * this.requestSecondsEma + 0.1 * seconds;
      this.notifyIdle();
    }
    this.wake();
  }

  private abortRequest(state: RequestState): void {
    for (const seq of state.sequences) this.finishSequence(seq, 'abort');
  }

  private failStep(chunks: ScheduledChunk[], err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.logger.error({ err: error, sequences: chunks.length }, 'engine step failed');
    for (const c of chunks) this.finishSequence(c.seq, 'error', undefined, error);
    if (err instanceof EngineError && !err.retryable) this.failEverything(error);
  }

  /** A non-retryable engine error: nothing can run any more. */
  private failEverything(error: Error): void {
    if (this.state !== 'closed') this.state = 'failed';
    for (const state of [...this.requests]) for (const seq of state.sequences) this.finishSequence(seq, 'error', undefined, error);
    this.wake();
  }
}

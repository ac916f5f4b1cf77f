/**
 * One submitted request inside the scheduler: its sequences (n of them) and the event queue behind
 * the GenerationHandle that serving/ iterates. Events are pushed by the scheduler loop as soon as a
 * step returns; the iterator drains them in order and ends after the last 'finished'.
 */
import type { SamplingParams, TokenLogprob } from '../engine/engine.js';
import type { GenerationHandle, GenerationRequest, SequenceEvent } from './types.js';

export type SequenceStatus =
  /** n > 1 child waiting for its parent to reach the fork point (holds no memory). */
  | 'pending-fork'
  | 'waiting'
  | 'running'
  | 'finished';

/** One completion of a request: the unit the scheduler runs. */
export class Sequence {
  status: SequenceStatus;
  /** Prompt + output tokens known so far (the last output token is not yet computed while running). */
  readonly tokens: number[];
  /** Positions computed by the engine (in the slot's state and the KV pages). Closes the gap to tokens.length. */
  computed = 0;
  /** Output tokens emitted. */
  outputCount = 0;
  /** Parent of an n > 1 request: fork the pending children once `computed` reaches this; -1 = no fork due. */
  forkAt = -1;
  /** The engine keeps bookkeeping for this seqId (scheduled since its last release). */
  engineKnown = false;

  constructor(
    readonly seqId: number,
    readonly index: number,
    readonly request: RequestState,
    status: SequenceStatus,
  ) {
    this.status = status;
    this.tokens = Array.from(request.request.promptTokens);
  }

  get promptLength(): number {
    return this.request.request.promptTokens.length;
  }
}

export interface RequestStateHooks {
  onAbort(state: RequestState): void;
  onFinishIndex(state: RequestState, index: number): void;
}

export class RequestState implements GenerationHandle {
  readonly sequences: Sequence[] = [];
  readonly submittedAtMs = performance.now();
  /** Sampling with eos/stop ids banned, used while a sequence has fewer than minTokens outputs. */
  readonly minTokensSampling: SamplingParams | null;
  /** Prompt logprobs by position - 1 (entry 0 = promptTokens[1]); filled across prefill chunks. */
  private readonly promptLogprobs: Array<TokenLogprob | undefined>;
  private promptLogprobsFilled = 0;
  promptLogprobsEmitted: boolean;
  private readonly queue: SequenceEvent[] = [];
  private queueHead = 0;
  private unfinished: number;
  private waiter: (() => void) | null = null;

  constructor(
    readonly request: GenerationRequest,
    eosTokenIds: readonly number[],
    private readonly hooks: RequestStateHooks,
  ) {
    this.unfinished = request.n;
    this.promptLogprobs = new Array(Math.max(0, request.promptTokens.length - 1));
    this.promptLogprobsEmitted = request.promptLogprobs === null;
    const banned = [...(request.stopTokenIds ?? []), ...(request.ignoreEos ? [] : eosTokenIds)];
    if ((request.minTokens ?? 0) > 0 && banned.length > 0) {
      const bias = new Map(request.sampling.logitBias ?? []);
      for (const id of banned) bias.set(id, -Infinity);
      this.minTokensSampling = { ...request.sampling, logitBias: bias };
    } else {
      this.minTokensSampling = null;
    }
  }

  get requestId(): string {
    return this.request.requestId;
  }

  get done(): boolean {
    return this.unfinished === 0;
  }

  /** Whether a chunk starting at `start` should ask the engine for prompt logprobs. */
  wantsPromptLogprobs(start: number): boolean {
    return !this.promptLogprobsEmitted && start < this.request.promptTokens.length;
  }

  /** Store a chunk's prompt logprobs (entries follow ScheduledSequence.promptLogprobs). */
  recordPromptLogprobs(start: number, entries: readonly TokenLogprob[]): void {
    const firstPosition = start === 0 ? 1 : start;
    for (let i = 0; i < entries.length; i++) {
      const slot = firstPosition + i - 1;
      if (slot >= this.promptLogprobs.length) break;
      if (this.promptLogprobs[slot] === undefined) this.promptLogprobsFilled++;
      this.promptLogprobs[slot] = entries[i];
    }
  }

  /** Emit 'prompt-logprobs' once, before the request's first token or finish. */
  flushPromptLogprobs(): void {
    if (this.promptLogprobsEmitted) return;
    if (this.promptLogprobsFilled !== this.promptLogprobs.length) {
      throw new Error(`request ${this.requestId}: prompt logprobs incomplete (${this.promptLogprobsFilled}/${this.promptLogprobs.length})`);
    }
    this.promptLogprobsEmitted = true;
    this.push({ kind: 'prompt-logprobs', logprobs: this.promptLogprobs as TokenLogprob[] });
  }

  /** Emit 'prompt-logprobs' if every entry is in (a sequence finishing early must not throw). */
  flushPromptLogprobsIfComplete(): void {
    if (!this.promptLogprobsEmitted && this.promptLogprobsFilled === this.promptLogprobs.length) this.flushPromptLogprobs();
  }

  /** Called by the scheduler only. */
  push(event: SequenceEvent): void {
    if (this.unfinished === 0) return;
    this.queue.push(event);
    if (event.kind === 'finished') this.unfinished--;
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  finish(index: number): void {
    this.hooks.onFinishIndex(this, index);
  }

  abort(): void {
    if (this.unfinished > 0) this.hooks.onAbort(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<SequenceEvent> {
    return {
      next: async (): Promise<IteratorResult<SequenceEvent>> => {
        for (;;) {
          if (this.queueHead < this.queue.length) {
            const value = this.queue[this.queueHead]!;
            this.queue[this.queueHead++] = undefined as unknown as SequenceEvent; // let the GC take it
            if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
              this.queue.splice(0, this.queueHead);
              this.queueHead = 0;
            }
            return { done: false, value };
          }
          if (this.unfinished === 0) return { done: true, value: undefined };
          await new Promise<void>((resolve) => (this.waiter = resolve));
        }
      },
      return: async (): Promise<IteratorResult<SequenceEvent>> => {
        this.abort();
        return { done: true, value: undefined };
      },
    };
  }
}

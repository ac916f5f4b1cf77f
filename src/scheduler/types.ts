/**
 * The contract between serving/ (one request's life, strings) and scheduler/ (continuous
 * batching, token ids only). serving/ submits a GenerationRequest and reads SequenceEvents from
 * the returned handle; the scheduler never sees text, JSON or HTTP.
 */
import type { SamplingParams, TokenLogprob } from '../engine/engine.js';

export interface SchedulerOptions {
  /** Most sequences running at once (also bounded by state slots). */
  maxNumSeqs: number;
  /** Token budget of one step: decodes (1 each) + prefill chunks. */
  maxNumBatchedTokens: number;
  /** Longest prompt + output of one sequence. */
  maxModelLen: number;
  /** Bounded waiting queue: more waiting requests are rejected (overloaded). */
  maxWaiting: number;
  /** Fraction of the engine's cache budget given to slots + pages (0..1]. */
  cacheFraction?: number;
}

/** What serving/ asks for: one prompt, n completions. */
export interface GenerationRequest {
  /** Caller's id, for logs and metrics. */
  requestId: string;
  promptTokens: Int32Array;
  /** Output token cap per sequence (already clamped to maxModelLen - prompt by serving/). */
  maxTokens: number;
  /** Fewer output tokens than this never end on eos/stop tokens. */
  minTokens?: number;
  /** Completions to generate from the prompt (n > 1 fans out after one shared prefill). */
  n: number;
  sampling: SamplingParams;
  /** Extra token ids that end a sequence (beyond the model's eos). */
  stopTokenIds?: number[];
  /** Keep going past eos (benchmarks). */
  ignoreEos?: boolean;
  /** Top-N for prompt-token logprobs (echo + logprobs), null = none. */
  promptLogprobs: number | null;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export type SequenceEvent =
  /** Prompt-token logprobs (once, before any token, when asked for); entry 0 is for promptTokens[1]. */
  | { kind: 'prompt-logprobs'; logprobs: TokenLogprob[] }
  /** A new output token of completion `index` (0..n-1). */
  | { kind: 'token'; index: number; tokenId: number; logprob: TokenLogprob | null }
  /** Completion `index` ended; no more events for it. `stopTokenId` is set when an eos/stop id ended it. */
  | { kind: 'finished'; index: number; reason: FinishReason; stopTokenId?: number; error?: Error };

/**
 * One submitted request. Iterating yields its events in order and ends after every completion
 * has finished. Breaking out of the iteration (or `abort()`) cancels all its sequences: they
 * leave the batch before the next step and their slots and pages are freed.
 */
export interface GenerationHandle extends AsyncIterable<SequenceEvent> {
  readonly requestId: string;
  /** Finish completion `index` now (a stop string matched in serving/): reason 'stop'. */
  finish(index: number): void;
  /** Cancel every completion of this request (client went away). */
  abort(): void;
}

export interface SchedulerStats {
  running: number;
  waiting: number;
  preemptedTotal: number;
  slotsUsed: number;
  slotsTotal: number;
  pagesUsed: number;
  pagesTotal: number;
}

/** Per-step telemetry, for metrics. Implemented by api/metrics; the scheduler only calls it. */
export interface SchedulerObserver {
  onStep(info: { durationMs: number; sequences: number; tokens: number; prefillTokens: number; decodeTokens: number }): void;
  onPreempt?(count: number): void;
}

/** Why a request was refused at submit time (serving/ maps these to HTTP errors). */
export class SchedulerRejection extends Error {
  constructor(
    message: string,
    /**
     * 'overloaded' → 429/503 with Retry-After; 'too_long' → 400 naming the limit; 'shutting_down' → 503;
     * 'engine_failed' → 503 (a non-retryable engine error: the process must be restarted).
     */
    readonly reason: 'overloaded' | 'too_long' | 'shutting_down' | 'engine_failed',
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'SchedulerRejection';
  }
}

/** What serving/ sees of the scheduler. */
export interface GenerationScheduler {
  /** Throws SchedulerRejection when the request cannot be accepted. */
  submit(request: GenerationRequest): GenerationHandle;
  stats(): SchedulerStats;
  /** True once a non-retryable engine error means nothing can run any more (liveness fails). */
  readonly failed: boolean;
  /** Stop admitting; resolves when running sequences finish or `deadlineMs` passes (then they are aborted). */
  drain(deadlineMs: number): Promise<void>;
}

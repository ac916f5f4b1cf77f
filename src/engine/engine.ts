/**
 * The engine seam: the only contract between scheduler/cache (who runs, where its memory is) and
 * an engine (how it is computed). Three implementations answer it: fake (tests), cpu
 * (onnxruntime-node) and cuda (native addon).
 *
 * Ownership: the engine owns bytes (weights, Mamba2 state slots, KV pages, sampling buffers);
 * cache/ owns which slot and page id belongs to which sequence. The engine never allocates
 * per-sequence memory on its own initiative: it allocates its pools once, in `initCache`, with the
 * counts that cache/ computed from `describe()`.
 *
 * Call order (all calls come from the scheduler loop, never concurrently):
 *   describe() → initCache(sizes) → step(plan)* (each awaited before the next) → close()
 * `copySlot` may be called between steps.
 *
 * Glossary: request (API) → sequence (scheduler; `n > 1` makes several) → slot (Mamba2 state)
 * → page (16-token KV block of every shared-attention invocation) → step (one engine call).
 */

export type EngineKind = 'fake' | 'cpu' | 'cuda';

/** Static facts about a loaded engine + model. cache/ sizes its pools from these numbers. */
export interface EngineDescription {
  kind: EngineKind;
  /** Served model id (e.g. "Zamba2-1.2B-instruct" or the folder name). */
  modelId: string;
  /** Weight/activation dtype the engine computes in ("float32", "bfloat16"). */
  dtype: string;
  vocabSize: number;
  /** Longest sequence (prompt + output) the model supports. */
  maxModelLen: number;
  /** Mamba2 layers (every layer has a mixer, hybrid ones too). */
  mambaLayerCount: number;
  /** Shared-attention invocations (hybrid layers): each keeps its own KV cache. */
  attentionLayerCount: number;
  /** Bytes of one state slot: conv + SSM state of every layer, for one sequence. */
  stateSlotBytes: number;
  /** Bytes of one KV page: K and V of `tokensPerPage` tokens in every attention layer. */
  kvPageBytes: number;
  /** Tokens per KV page (16). */
  tokensPerPage: number;
  /** Most tokens (sum over sequences of `tokens.length`) one step may carry. */
  maxTokensPerStep: number;
  /** Most sequences one step may carry. */
  maxSequencesPerStep: number;
  /** Memory the engine can give to slots + pages, after weights and activations. */
  cacheBudgetBytes: number;
  /** Token ids that end generation (eos) unless the request asks to ignore them. */
  eosTokenIds: number[];
}

/** Pool sizes decided by cache/ and handed to the engine once. */
export interface CacheSizes {
  slotCount: number;
  pageCount: number;
}

/** How to pick the next token of one sequence. Defaults mean greedy (temperature 0). */
export interface SamplingParams {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 or -1 = off. */
  topK: number;
  /** 0 = off. */
  minP: number;
  /** OpenAI semantics: subtracted once from the logit of every token already generated. */
  presencePenalty: number;
  /** OpenAI semantics: subtracted count-times from the logit of every token already generated. */
  frequencyPenalty: number;
  /** vLLM/HF semantics over prompt + output tokens: positive logits divided, negative multiplied. 1 = off. */
  repetitionPenalty: number;
  /** Per-sequence RNG seed; null = the engine's own seeded stream. The same seed gives the same tokens. */
  seed: number | null;
  /** Added to logits before sampling, by token id. */
  logitBias: ReadonlyMap<number, number> | null;
  /** Top-N logprobs to return with each sampled token; 0 = only the sampled token's logprob; null = none. */
  logprobs: number | null;
}

export const GREEDY: SamplingParams = Object.freeze({
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  seed: null,
  logitBias: null,
  logprobs: null,
});

/** One sequence's share of a step. */
export interface ScheduledSequence {
  seqId: number;
  /** Index into the engine's state-slot pool. */
  slot: number;
  /** KV page ids covering positions [0, startPosition + tokens.length): page i holds positions [16i, 16i+16). */
  pageTable: Int32Array;
  /** Position of tokens[0]; equals the number of tokens already computed for this sequence. */
  startPosition: number;
  /** Tokens to compute this step: a prefill chunk (many) or a decode token (one). */
  tokens: Int32Array;
  /**
   * Number of prompt tokens of the sequence (positions below it are prompt, above are output).
   * Used by penalties: presence/frequency count output tokens only.
   */
  promptLength: number;
  /** Sample a next token after this chunk (false for a prefill chunk that is not the prompt's last). */
  sample: boolean;
  sampling: SamplingParams;
  /**
   * Top-N for prompt logprobs: return, for each tokens[i] (i ≥ 1, and i = 0 when startPosition > 0),
   * its logprob given the tokens before it, plus the top N. null = none. (echo + logprobs scoring.)
   */
  promptLogprobs: number | null;
  /** Return the raw logits of every position of this chunk (tests and golden checks only). */
  returnLogits?: boolean;
}

export interface StepPlan {
  /** Monotonic step number (for logs and invariant checks). */
  stepId: number;
  sequences: ScheduledSequence[];
  /** Slots to zero before this step runs (slots handed to new or recomputed sequences). */
  resetSlots: Int32Array;
  /**
   * Sequences finished or aborted since the last step: the engine drops per-sequence bookkeeping.
   * Also preempted ones: such a seqId comes back later on a reset slot with startPosition 0
   * (recompute of prompt + output so far).
   */
  releasedSeqIds: number[];
}

export interface TopLogprobs {
  tokenIds: Int32Array;
  logprobs: Float32Array;
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
  /** Most likely tokens at this position, best first (length = requested N). */
  top: TopLogprobs | null;
}

export interface SequenceOutput {
  seqId: number;
  /** Sampled next token; -1 when `sample` was false. */
  token: number;
  /** Logprob of `token` plus top-N, when the sequence asked for logprobs. */
  logprobs: TokenLogprob | null;
  /** Prompt-token logprobs of this chunk (see ScheduledSequence.promptLogprobs). */
  promptLogprobs: TokenLogprob[] | null;
  /** [tokens.length × vocab] logits when `returnLogits` was set. */
  logits?: Float32Array;
}

export interface StepResult {
  stepId: number;
  /** One entry per scheduled sequence, in plan order. */
  outputs: SequenceOutput[];
  /** Wall time of the engine's compute for this step. */
  computeMs: number;
}

export interface Engine {
  describe(): EngineDescription;
  /** Allocate the state-slot and KV-page pools. Called once, before the first step. */
  initCache(sizes: CacheSizes): Promise<void>;
  /**
   * Run one step. Resolves when every sequence's chunk is computed and sampled. Never blocks the
   * event loop for long (native engines compute off the main thread). Rejects with EngineError;
   * a rejected step leaves the named sequences' state undefined (the scheduler fails them).
   */
  step(plan: StepPlan): Promise<StepResult>;
  /** Copy the state slot `src` into `dst` (n > 1 fan-out, prefix reuse). KV pages are shared by id, not copied. */
  copySlot(src: number, dst: number): Promise<void>;
  close(): Promise<void>;
}

/** Error thrown by engines. `retryable` = the server can keep going (the step's sequences fail). */
export class EngineError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable = true,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EngineError';
  }
}

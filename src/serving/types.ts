/**
 * What serving/ offers the API layer: one request's generation as a stream of text events.
 * Token ids go down to the scheduler; text, finish reasons and usage come back up. No JSON here.
 */
import type { SamplingParams } from '../engine/engine.js';

export interface GenerateParams {
  requestId: string;
  promptTokens: readonly number[];
  /** Output tokens per completion, already checked by InputProcessor.resolveMaxTokens. 0 = none (echo scoring). */
  maxTokens: number;
  minTokens: number;
  n: number;
  sampling: SamplingParams;
  /** Stop strings: generation ends before them and they never appear in the text. */
  stop: readonly string[];
  stopTokenIds: readonly number[];
  ignoreEos: boolean;
  /** vLLM extension: keep the matched stop string in the text. */
  includeStopStrInOutput: boolean;
  skipSpecialTokens: boolean;
  /** Top-N logprobs for each output token; null = none. */
  logprobs: number | null;
  /** Top-N logprobs for each prompt token (echo + logprobs); null = none. */
  promptLogprobs: number | null;
}

/** One token's logprob as shown to clients. */
export interface TokenLogprobInfo {
  tokenId: number;
  /** The token's own text (" Hello"); see TextTokenizer.tokenText. */
  text: string;
  bytes: number[];
  logprob: number;
  /** Most likely tokens at this position, best first. */
  top: { tokenId: number; text: string; bytes: number[]; logprob: number }[];
}

export type ServingFinishReason = 'stop' | 'length';

export type ServingEvent =
  /** Once, before any delta, when prompt logprobs were asked for: one entry per prompt token, the first null. */
  | { kind: 'prompt-logprobs'; entries: (TokenLogprobInfo | null)[] }
  /** New final text of completion `index`, with the tokens (and their logprobs) that produced it. */
  | { kind: 'delta'; index: number; text: string; tokenIds: number[]; logprobs: TokenLogprobInfo[] | null }
  /**
   * Completion `index` ended. `stopReason`: the matched stop string, or the stop token id from
   * stop_token_ids, or null for eos / length (vLLM's `stop_reason`).
   */
  | { kind: 'finished'; index: number; finishReason: ServingFinishReason; stopReason: string | number | null; completionTokens: number };

/** Per-request telemetry; implemented by api/metrics, called once per request by serving/. */
export interface ServingObserver {
  onRequestDone(info: {
    promptTokens: number;
    completionTokens: number;
    /** null when no token was produced. */
    timeToFirstTokenMs: number | null;
    /** Mean gap between output tokens; null with fewer than two tokens. */
    timePerOutputTokenMs: number | null;
    e2eMs: number;
    outcome: 'finished' | 'aborted' | 'error';
    finishReasons: ServingFinishReason[];
  }): void;
}

/**
 * One completion's output side: token ids → final text (incremental detokenizer), stop strings
 * (held back until decided, never leaked), logprob text, token counts. Pure bookkeeping: the
 * generation service feeds it scheduler events and acts on what it returns (e.g. finishing the
 * sequence when a stop string matched).
 */
import type { TokenLogprob } from '../engine/engine.js';
import { IncrementalDetokenizer, type TextTokenizer } from '../tokenizer/index.js';
import { StopStringMatcher } from './stop-string-matcher.js';
import type { TokenLogprobInfo } from './types.js';

export interface OutputStep {
  /** Text that became final with this token (may be ""). */
  text: string;
  /** The stop string that matched: the completion must end now. */
  stop: string | null;
}

export function logprobInfo(tokenizer: TextTokenizer, lp: TokenLogprob): TokenLogprobInfo {
  const top: TokenLogprobInfo['top'] = [];
  if (lp.top) {
    for (let i = 0; i < lp.top.tokenIds.length; i++) {
      const id = lp.top.tokenIds[i]!;
      top.push({ tokenId: id, text: tokenizer.tokenText(id), bytes: tokenizer.tokenBytes(id), logprob: lp.top.logprobs[i]! });
    }
  }
  return { tokenId: lp.tokenId, text: tokenizer.tokenText(lp.tokenId), bytes: tokenizer.tokenBytes(lp.tokenId), logprob: lp.logprob, top };
}

export class OutputProcessor {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly stops: StopStringMatcher;
  /** Output tokens counted for usage (every sampled token, eos included, as vLLM and OpenAI count). */
  completionTokens = 0;
  /** Tokens and logprobs since the last delta was taken. */
  pendingTokenIds: number[] = [];
  pendingLogprobs: TokenLogprobInfo[] = [];
  done = false;

  constructor(
    private readonly tokenizer: TextTokenizer,
    promptTokens: readonly number[],
    private readonly options: {
      stop: readonly string[];
      includeStopStrInOutput: boolean;
      skipSpecialTokens: boolean;
      minTokens: number;
      /** Token ids that end the sequence (eos unless ignored, plus stop_token_ids): never shown as text. */
      endTokenIds: ReadonlySet<number>;
    },
  ) {
    this.detokenizer = new IncrementalDetokenizer(tokenizer, promptTokens, options.skipSpecialTokens);
    this.stops = new StopStringMatcher(options.stop, options.includeStopStrInOutput);
  }

  /** Adds one output token. */
  pushToken(tokenId: number, logprob: TokenLogprob | null): OutputStep {
    this.completionTokens++;
    this.pendingTokenIds.push(tokenId);
    if (logprob) this.pendingLogprobs.push(logprobInfo(this.tokenizer, logprob));
    const endsSequence = this.options.endTokenIds.has(tokenId) && this.completionTokens > this.options.minTokens;
    // The token that ends a sequence (eos, stop_token_ids) is counted but its text is not shown.
    if (endsSequence) return { text: '', stop: null };
    const text = this.detokenizer.push(tokenId);
    // vLLM checks stop strings only once min_tokens are out.
    if (this.completionTokens <= this.options.minTokens) return { text, stop: null };
    return this.stops.push(text);
  }

  /** The rest of the text when the completion ends for a reason other than a stop string. */
  finish(): OutputStep {
    const tail = this.detokenizer.flush();
    const step = this.stops.push(tail);
    if (step.stop !== null) return step;
    return { text: step.text + this.stops.flush(), stop: null };
  }

  /** Takes the tokens and logprobs gathered since the last call. */
  takePending(): { tokenIds: number[]; logprobs: TokenLogprobInfo[] } {
    const out = { tokenIds: this.pendingTokenIds, logprobs: this.pendingLogprobs };
    this.pendingTokenIds = [];
    this.pendingLogprobs = [];
    return out;
  }
}

/**
 * Streaming token ids → text. Decoding token by token is wrong for SentencePiece-style
 * tokenizers: a lone "▁Hello" decodes to "Hello" (the decoder strips a leading space), and a
 * character split into byte-fallback tokens (<0xE2><0x82><0xAC>) decodes to U+FFFD until its
 * last byte arrives. So, like vLLM and TGI, we decode a short window of previous tokens with and
 * without the new ones and emit the suffix difference, and hold text back while it ends in an
 * incomplete UTF-8 sequence. The window starts inside the prompt so the first output token gets
 * its leading space right.
 *
 * One instance per completion, owned by serving/output-processor; not shared.
 */
import type { TextTokenizer } from './model-tokenizer.js';

/** Prompt tokens used as context for the first output tokens (vLLM uses 5 as well). */
const CONTEXT_TOKENS = 5;
const REPLACEMENT_CHAR = '\uFFFD';

export class IncrementalDetokenizer {
  private tokens: number[];
  /** Start of the decode window: tokens before it never influence new text. */
  private prefixOffset = 0;
  /** End of the text already emitted (in tokens). */
  private readOffset: number;

  constructor(
    private readonly tokenizer: TextTokenizer,
    promptTokens: ArrayLike<number>,
    private readonly skipSpecialTokens = true,
  ) {
    const start = Math.max(0, promptTokens.length - CONTEXT_TOKENS);
    this.tokens = Array.from({ length: promptTokens.length - start }, (_, i) => promptTokens[start + i]!);
    this.readOffset = this.tokens.length;
  }

  /** Adds one token; returns the text that became final (possibly ""). */
  push(tokenId: number): string {
    this.tokens.push(tokenId);
    const window = this.tokens;
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const prefixText = this.tokenizer.decode(window.slice(this.prefixOffset, this.readOffset), opts);
    const fullText = this.tokenizer.decode(window.slice(this.prefixOffset), opts);
    if (fullText.length <= prefixText.length || fullText.endsWith(REPLACEMENT_CHAR)) return '';
    const delta = fullText.slice(prefixText.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = window.length;
    if (this.prefixOffset > 64) {
      // Keep the window small: nothing before prefixOffset is ever decoded again.
      this.tokens = window.slice(this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
    return delta;
  }

  /**
   * The text still held back at the end of the completion (bytes that never formed a character
   * come out as U+FFFD, as every decoder does).
   */
  flush(): string {
    if (this.readOffset >= this.tokens.length) return '';
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const prefixText = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset), opts);
    const fullText = this.tokenizer.decode(this.tokens.slice(this.prefixOffset), opts);
    this.prefixOffset = this.readOffset = this.tokens.length;
    return fullText.length > prefixText.length ? fullText.slice(prefixText.length) : '';
  }
}

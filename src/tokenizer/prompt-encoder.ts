/**
 * Prompt text → token ids, inline for short prompts and in the EncodePool's worker threads for
 * long ones: a worker round trip (~0.1-0.3 ms of messaging) costs more than encoding a few dozen
 * tokens, while a 2k-token prompt would block the event loop for 10-30 ms (280 ms seen under load).
 *
 * Who calls: serving/input-processor for every text prompt. Both paths run the same
 * @huggingface/tokenizers code on the same tokenizer files, so they give the same ids.
 */
import type { EncodePool } from './encode-pool.js';
import type { EncodeOptions, TextTokenizer } from './model-tokenizer.js';

export interface PromptEncoderOptions {
  /** null = always inline (no worker threads). */
  pool: EncodePool | null;
  /** Texts of at least this many UTF-16 code units go to the pool. */
  minPooledChars: number;
}

export class PromptEncoder {
  constructor(
    readonly tokenizer: TextTokenizer,
    private readonly options: PromptEncoderOptions = { pool: null, minPooledChars: Number.POSITIVE_INFINITY },
  ) {}

  /** Rejects with the signal's reason when it aborts before the ids are back. */
  async encode(text: string, options: EncodeOptions, signal?: AbortSignal): Promise<number[]> {
    const { pool, minPooledChars } = this.options;
    if (pool !== null && text.length >= minPooledChars) return pool.encode(text, options, signal);
    signal?.throwIfAborted();
    return this.tokenizer.encode(text, options);
  }
}

/**
 * Request input → prompt token ids: chat template or raw prompt, tokenization, and the length
 * checks against the context (vLLM's input processor). Called by api/ routes before submitting.
 *
 * Tokenization goes through a PromptEncoder: long prompts are encoded in worker threads, so the
 * prompt methods are async and take the request's AbortSignal (client gone → nothing is encoded
 * or submitted for it).
 */
import {
  ChatTemplateError,
  EncodePoolBusyError,
  EncodePoolClosedError,
  PromptEncoder,
  type ChatMessage,
  type EncodeOptions,
  type TextTokenizer,
} from '../tokenizer/index.js';
import { ServingError } from './errors.js';

export interface PromptInput {
  promptTokens: number[];
  /** The prompt as text (echo); for token-id prompts, their decoded text. */
  promptText: string;
}

export class InputProcessor {
  private readonly encoder: PromptEncoder;

  constructor(
    private readonly tokenizer: TextTokenizer,
    /** Longest prompt + output the server accepts. */
    readonly maxModelLen: number,
    /** Default: everything inline on the calling thread. */
    encoder?: PromptEncoder,
  ) {
    this.encoder = encoder ?? new PromptEncoder(tokenizer);
  }

  /** Encoder failures as serving errors: pool closed → shutting_down, pool queue full → overloaded, abort → cancelled. */
  private async encode(text: string, options: EncodeOptions, signal: AbortSignal | undefined): Promise<number[]> {
    try {
      return await this.encoder.encode(text, options, signal);
    } catch (err) {
      if (err instanceof EncodePoolClosedError) throw new ServingError('shutting_down', 'the server is shutting down', null, 1, { cause: err });
      if (err instanceof EncodePoolBusyError) throw new ServingError('overloaded', `server overloaded: ${err.message}`, null, 1, { cause: err });
      if (signal?.aborted) throw new ServingError('cancelled', 'the client closed the request while its prompt was being tokenized', null, undefined, { cause: err });
      throw err;
    }
  }

  /**
   * Renders the chat template with the generation prompt and tokenizes it. BOS is added as the
   * tokenizer says, except when the rendered text already starts with it (Llama-style templates
   * write `{{ bos_token }}` themselves): no double BOS.
   */
  async chatPrompt(messages: readonly ChatMessage[], addGenerationPrompt = true, signal?: AbortSignal): Promise<PromptInput> {
    if (this.tokenizer.chatTemplate === null) {
      throw new ServingError(
        'no_chat_template',
        'this model has no chat template (tokenizer_config.json has no "chat_template"), so it cannot serve /v1/chat/completions; use /v1/completions with a plain prompt',
        'messages',
      );
    }
    let text: string;
    try {
      text = this.tokenizer.renderChat(messages, addGenerationPrompt);
    } catch (err) {
      if (err instanceof ChatTemplateError) throw new ServingError('chat_template', err.message, 'messages');
      throw err;
    }
    const bos = this.tokenizer.bosToken;
    const templateHasBos = bos !== null && bos.length > 0 && text.startsWith(bos);
    const promptTokens = await this.encode(text, { addSpecialTokens: !templateHasBos }, signal);
    return { promptTokens, promptText: text };
  }

  /** A completions prompt: text (tokenized with special tokens, as vLLM does) or token ids. */
  async completionPrompt(prompt: string | readonly number[], param = 'prompt', signal?: AbortSignal): Promise<PromptInput> {
    if (typeof prompt === 'string') {
      return { promptTokens: await this.encode(prompt, { addSpecialTokens: true }, signal), promptText: prompt };
    }
    if (prompt.length === 0) throw new ServingError('invalid', 'prompt must not be empty', param);
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= this.tokenizer.vocabSize) {
        throw new ServingError('invalid', `token id ${id} in the prompt is outside the vocabulary [0, ${this.tokenizer.vocabSize})`, param);
      }
    }
    return { promptTokens: [...prompt], promptText: this.tokenizer.decode(prompt, { skipSpecialTokens: false }) };
  }

  /**
   * Checks prompt + requested output against the context and returns the output cap:
   * `requested`, or everything left of the context when it is null (vLLM's default).
   */
  resolveMaxTokens(promptLength: number, requested: number | null, param = 'max_tokens'): number {
    if (promptLength === 0) throw new ServingError('invalid', 'prompt must not be empty', 'prompt');
    const room = this.maxModelLen - promptLength;
    if (room <= 0) {
      throw new ServingError(
        'context_length',
        `This model's maximum context length is ${this.maxModelLen} tokens. However, your prompt has ${promptLength} tokens, which leaves no room for the completion. Please shorten the prompt.`,
        'messages',
      );
    }
    if (requested === null) return room;
    if (requested > room) {
      throw new ServingError(
        'context_length',
        `This model's maximum context length is ${this.maxModelLen} tokens. However, you requested ${promptLength + requested} tokens (${promptLength} in the prompt, ${requested} in the completion). Please reduce the length of the prompt or completion.`,
        param,
      );
    }
    return requested;
  }

  /** logit_bias keys must be token ids of this vocabulary. */
  logitBias(bias: Readonly<Record<string, number>> | null | undefined, param = 'logit_bias'): Map<number, number> | null {
    if (!bias) return null;
    const out = new Map<number, number>();
    for (const [key, value] of Object.entries(bias)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || id >= this.tokenizer.vocabSize) {
        throw new ServingError('invalid', `logit_bias key "${key}" is not a token id of this model (0..${this.tokenizer.vocabSize - 1})`, param);
      }
      out.set(id, value);
    }
    return out.size > 0 ? out : null;
  }
}

/**
 * Chat templates: the model's own Jinja template (tokenizer_config.json `chat_template`, or a
 * chat_template.jinja file beside it) rendered with @huggingface/jinja, the way Hugging Face
 * `apply_chat_template(..., add_generation_prompt=True)` does.
 *
 * Called by serving/input-processor for chat requests. Text only: no tokens here.
 */
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  /** Text parts already joined by the caller (serving/). */
  content: string;
  name?: string;
}

/** A template failed to render (a template `raise_exception`, e.g. "roles must alternate"). */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

export interface ChatTemplateOptions {
  bosToken: string | null;
  eosToken: string | null;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly options: ChatTemplateOptions,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ChatTemplateError(`the model's chat template does not parse: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Renders the conversation; `addGenerationPrompt` appends the assistant turn's opening. */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    try {
      return this.template.render({
        messages: messages.map((m) => (m.name === undefined ? { role: m.role, content: m.content } : { ...m })),
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.options.bosToken ?? '',
        eos_token: this.options.eosToken ?? '',
      });
    } catch (err) {
      throw new ChatTemplateError(`chat template error: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Picks the template from tokenizer_config.json's `chat_template`: a string, or (newer HF format)
 * a list of {name, template} where "default" is the chat one.
 */
export function pickChatTemplateSource(value: unknown): string | null {
  if (typeof value === 'string' && value.trim().length > 0) return value;
  if (Array.isArray(value)) {
    const named = value.filter(
      (t): t is { name: string; template: string } =>
        typeof t === 'object' && t !== null && typeof t.name === 'string' && typeof t.template === 'string',
    );
    return named.find((t) => t.name === 'default')?.template ?? named[0]?.template ?? null;
  }
  return null;
}

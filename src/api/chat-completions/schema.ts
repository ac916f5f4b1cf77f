/** POST /v1/chat/completions request body: OpenAI's wire shape (text chat), plus vLLM's sampling extensions. */
import { z } from 'zod';
import { samplingFields } from '../shared/sampling.js';

const contentPart = z
  .object({ type: z.string(), text: z.string().optional() })
  .refine((p) => p.type === 'text' && typeof p.text === 'string', {
    message: 'only text content parts ({"type":"text","text":"..."}) are supported',
  });

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(contentPart)]).nullish(),
  name: z.string().nullish(),
});

export const chatRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(chatMessageSchema).min(1, 'must contain at least one message'),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  /** vLLM extension: render the assistant turn's opening (default true). */
  add_generation_prompt: z.boolean().nullish(),
  tools: z.array(z.unknown()).nullish(),
  response_format: z.object({ type: z.string() }).nullish(),
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;

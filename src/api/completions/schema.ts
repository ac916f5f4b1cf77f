/** POST /v1/completions request body: OpenAI's legacy completions, plus vLLM's sampling extensions. */
import { z } from 'zod';
import { samplingFields } from '../shared/sampling.js';

const tokenIds = z.array(z.number().int().min(0)).min(1, 'a token-id prompt must not be empty');

export const completionRequestSchema = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1, 'must not be empty'), tokenIds, z.array(tokenIds).min(1, 'must not be empty')]),
  /** 0 is allowed: with echo + logprobs it scores the prompt (lm-eval-harness loglikelihood). */
  max_tokens: z.number().int().min(0).nullish(),
  echo: z.boolean().nullish(),
  /** Top-N logprobs per token (OpenAI allows up to 5; vLLM up to 20). */
  logprobs: z.number().int().min(0).max(20).nullish(),
  suffix: z.string().nullish(),
  best_of: z.number().int().min(1).nullish(),
});

export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** The prompt field as a list of prompts, each text or token ids. */
export function promptList(prompt: CompletionRequest['prompt']): (string | number[])[] {
  if (typeof prompt === 'string') return [prompt];
  if (prompt.length > 0 && typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as (string | number[])[];
}

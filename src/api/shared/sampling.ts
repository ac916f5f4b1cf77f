/**
 * Request fields shared by /v1/chat/completions and /v1/completions (OpenAI's, plus the vLLM
 * extensions clients use: top_k, min_p, repetition_penalty, min_tokens, ignore_eos,
 * stop_token_ids, skip_special_tokens, include_stop_str_in_output), and their mapping to
 * serving's GenerateParams. Optional fields accept null, as OpenAI's own clients send it.
 */
import { z } from 'zod';
import type { SamplingParams } from '../../engine/engine.js';
import type { GenerateParams, InputProcessor, SamplingDefaults } from '../../serving/index.js';
import { invalid } from './validation.js';

const finite = () => z.number().refine(Number.isFinite, 'must be a finite number');

export const samplingFields = {
  model: z.string().nullish(),
  temperature: finite().min(0).max(2).nullish(),
  top_p: finite().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: finite().min(0).max(1).nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  presence_penalty: finite().min(-2).max(2).nullish(),
  frequency_penalty: finite().min(-2).max(2).nullish(),
  repetition_penalty: finite().gt(0).max(10).nullish(),
  logit_bias: z.record(z.string(), finite().min(-100).max(100)).nullish(),
  user: z.string().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  min_tokens: z.number().int().min(0).nullish(),
  ignore_eos: z.boolean().nullish(),
  stop_token_ids: z.array(z.number().int().min(0)).max(64).nullish(),
  skip_special_tokens: z.boolean().nullish(),
  include_stop_str_in_output: z.boolean().nullish(),
};

type SamplingBody = { [K in keyof typeof samplingFields]?: z.infer<(typeof samplingFields)[K]> };

/** Fields the request leaves out take the model's defaults (generation_config.json, else OpenAI's). */
export function toSamplingParams(body: SamplingBody, input: InputProcessor, logprobs: number | null, defaults: SamplingDefaults): SamplingParams {
  const topK = body.top_k ?? defaults.topK;
  return {
    temperature: body.temperature ?? defaults.temperature,
    topP: body.top_p ?? defaults.topP,
    // vLLM's -1 means "off", like 0.
    topK: topK < 0 ? 0 : topK,
    minP: body.min_p ?? defaults.minP,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    repetitionPenalty: body.repetition_penalty ?? defaults.repetitionPenalty,
    seed: body.seed ?? null,
    logitBias: input.logitBias(body.logit_bias),
    logprobs,
  };
}

export function checkStreamOptions(body: SamplingBody): void {
  if (body.stream_options && !body.stream) throw invalid('stream_options', 'only allowed when stream is true');
}

export function stopStrings(stop: string | string[] | null | undefined): string[] {
  if (stop === undefined || stop === null) return [];
  return (typeof stop === 'string' ? [stop] : stop).filter((s) => s.length > 0);
}

/** The fields of GenerateParams every endpoint fills the same way. */
export function commonGenerateParams(
  body: SamplingBody,
  input: InputProcessor,
  logprobs: number | null,
  defaults: SamplingDefaults,
): Omit<GenerateParams, 'requestId' | 'promptTokens' | 'maxTokens' | 'promptLogprobs'> {
  const minTokens = body.min_tokens ?? 0;
  return {
    minTokens,
    n: body.n ?? 1,
    sampling: toSamplingParams(body, input, logprobs, defaults),
    stop: stopStrings(body.stop),
    stopTokenIds: body.stop_token_ids ?? [],
    ignoreEos: body.ignore_eos ?? false,
    includeStopStrInOutput: body.include_stop_str_in_output ?? false,
    skipSpecialTokens: body.skip_special_tokens ?? true,
    logprobs,
  };
}

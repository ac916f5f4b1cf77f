/**
 * Default sampling parameters for requests that leave them out. Like vLLM (`--generation-config
 * auto`), the model's generation_config.json may set temperature, top_p, top_k, min_p and
 * repetition_penalty; anything it does not set falls back to OpenAI's defaults (temperature 1,
 * no truncation, no penalty).
 */
export interface SamplingDefaults {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repetitionPenalty: number;
}

export const OPENAI_SAMPLING_DEFAULTS: SamplingDefaults = Object.freeze({ temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1 });

function num(value: unknown, ok: (n: number) => boolean): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && ok(value) ? value : undefined;
}

/** Picks the sampling fields out of a parsed generation_config.json; invalid values are ignored. */
export function samplingDefaultsFrom(generationConfig: Readonly<Record<string, unknown>> | null | undefined): SamplingDefaults {
  const g = generationConfig ?? {};
  const d = OPENAI_SAMPLING_DEFAULTS;
  return {
    temperature: num(g.temperature, (n) => n >= 0) ?? d.temperature,
    topP: num(g.top_p, (n) => n > 0 && n <= 1) ?? d.topP,
    topK: num(g.top_k, (n) => Number.isInteger(n) && n >= 0) ?? d.topK,
    minP: num(g.min_p, (n) => n >= 0 && n <= 1) ?? d.minP,
    repetitionPenalty: num(g.repetition_penalty, (n) => n > 0) ?? d.repetitionPenalty,
  };
}

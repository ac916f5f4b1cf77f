/**
 * What routes share: the serving objects, the served model's facts, metrics and readiness.
 * Built once by buildApp; read-only for routes (readiness is flipped by main at shutdown).
 */
import type { ServerConfig } from '../../config/schema.js';
import type { GenerationService, InputProcessor, SamplingDefaults } from '../../serving/index.js';
import type { TextTokenizer } from '../../tokenizer/index.js';
import { ApiError } from '../errors.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';

export interface Readiness {
  ready: boolean;
  /** True once the engine failed for good: /health and /ready answer 503 so the orchestrator restarts the process. */
  engineFailed?: () => boolean;
}

export interface ApiContext {
  config: ServerConfig;
  modelId: string;
  maxModelLen: number;
  tokenizer: TextTokenizer;
  input: InputProcessor;
  service: GenerationService;
  /** Sampling values for fields a request leaves out. */
  samplingDefaults: SamplingDefaults;
  metrics: ServerMetrics;
  readiness: Readiness;
}

/** 404 for a model this server does not serve; an omitted model means the served one (as vLLM). */
export function checkModel(ctx: ApiContext, model: string | null | undefined): void {
  if (model === undefined || model === null || model === ctx.modelId) return;
  throw new ApiError('ZMB_ERR_MODEL_NOT_FOUND', `The model \`${model}\` does not exist.`, 'model');
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

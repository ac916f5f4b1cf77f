export { GenerationService, type GenerationStream, type GenerationServiceDeps } from './generation-service.js';
export { InputProcessor, type PromptInput } from './input-processor.js';
export { OutputProcessor } from './output-processor.js';
export { StopStringMatcher } from './stop-string-matcher.js';
export { ServingError, type ServingErrorReason } from './errors.js';
export { mergeStreams } from './merge-streams.js';
export { OPENAI_SAMPLING_DEFAULTS, samplingDefaultsFrom, type SamplingDefaults } from './sampling-defaults.js';
export type { GenerateParams, ServingEvent, ServingFinishReason, ServingObserver, TokenLogprobInfo } from './types.js';

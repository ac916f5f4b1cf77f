export { ChatTemplate, ChatTemplateError, pickChatTemplateSource, type ChatMessage } from './chat-template.js';
export {
  HfTokenizer,
  loadTokenizer,
  TOKENIZER_FILES,
  type TextTokenizer,
  type EncodeOptions,
  type DecodeOptions,
  type EncoderSource,
} from './model-tokenizer.js';
export { IncrementalDetokenizer } from './incremental-detokenizer.js';
export { EncodePool, EncodePoolBusyError, EncodePoolClosedError, type EncodePoolStats } from './encode-pool.js';
export { PromptEncoder, type PromptEncoderOptions } from './prompt-encoder.js';

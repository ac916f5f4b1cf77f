export { ChatTemplate, ChatTemplateError, pickChatTemplateSource, type ChatMessage } from './chat-template.js';
export { HfTokenizer, loadTokenizer, TOKENIZER_FILES, type TextTokenizer, type EncodeOptions, type DecodeOptions } from './model-tokenizer.js';
export { IncrementalDetokenizer } from './incremental-detokenizer.js';

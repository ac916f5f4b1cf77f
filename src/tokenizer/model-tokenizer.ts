/**
 * Text ↔ token ids for one checkpoint folder: tokenizer.json + tokenizer_config.json through
 * @huggingface/tokenizers, special tokens (bos/eos) as the model's files say, and its chat template.
 *
 * Used by serving/ only (input: encode + chat template; output: decode via the incremental
 * detokenizer). Immutable after loading; safe to share between requests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ChatTemplate, pickChatTemplateSource, type ChatMessage } from './chat-template.js';
import { withWordPieces } from './word-pieces.js';

export interface EncodeOptions {
  /** Add the model's special tokens (BOS) as tokenizer.json's post-processor says. */
  addSpecialTokens: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (bos, eos, …) from the text. Default true (vLLM's default). */
  skipSpecialTokens?: boolean;
}

/**
 * The parsed tokenizer files a worker thread builds its own copy of the tokenizer from (EncodePool).
 * Plain JSON objects, so they survive structured cloning into a worker.
 */
export interface EncoderSource {
  tokenizerJson: JsonObject;
  tokenizerConfig: JsonObject;
}

/** What serving/ needs from a tokenizer; the test double in test/helpers implements it too. */
export interface TextTokenizer {
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosToken: string | null;
  /** Every id that ends generation (tokenizer eos + generation_config/config eos ids). */
  readonly eosTokenIds: readonly number[];
  /** Whether the tokenizer prepends BOS when encoding with special tokens. */
  readonly addsBos: boolean;
  readonly chatTemplate: ChatTemplate | null;
  encode(text: string, options: EncodeOptions): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** Text of one token on its own, as OpenAI logprobs show it (" Hello", "\n"; raw piece for a lone byte). */
  tokenText(id: number): string;
  /** UTF-8 bytes of one token on its own (one byte for a byte-fallback token). */
  tokenBytes(id: number): number[];
  isSpecial(id: number): boolean;
  renderChat(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string;
  /** Present when encode() can be reproduced in a worker thread (EncodePool); absent = inline only. */
  readonly encoderSource?: EncoderSource;
  /** Whether encode cuts the text into words before BPE (word-pieces.ts), or why not; absent: not known. */
  readonly wordPieces?: { applied: boolean; reason?: string };
}

type JsonObject = Record<string, unknown>;

function readJson(path: string): JsonObject | null {
  if (!existsSync(path)) return null;
  const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
  return typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as JsonObject) : null;
}

/** tokenizer_config.json writes special tokens as a string or as an AddedToken object. */
function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as JsonObject).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

function idList(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value)) return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v));
  return [];
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosToken: string | null;
  readonly eosTokenIds: readonly number[];
  readonly addsBos: boolean;
  readonly chatTemplate: ChatTemplate | null;
  readonly encoderSource?: EncoderSource;
  readonly wordPieces?: { applied: boolean; reason?: string };
  private readonly specialIds: ReadonlySet<number>;
  /** Metaspace-style vocab ("▁Hello"): pieces are shown with the marker turned into a space. */
  private readonly metaspace: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    tokenizerConfig: JsonObject,
    extras: {
      generationConfig?: JsonObject | null;
      modelConfig?: JsonObject | null;
      chatTemplateSource?: string | null;
      /** The tokenizer.json object `tokenizer` was built from (enables worker-thread encoding). */
      tokenizerJson?: JsonObject;
      /** Whether that object cuts words before BPE (word-pieces.ts). */
      wordPieces?: { applied: boolean; reason?: string };
    } = {},
  ) {
    if (extras.tokenizerJson !== undefined) this.encoderSource = { tokenizerJson: extras.tokenizerJson, tokenizerConfig };
    if (extras.wordPieces !== undefined) this.wordPieces = extras.wordPieces;
    this.vocabSize = tokenizer.get_vocab(true).size;
    this.bosToken = tokenContent(tokenizerConfig.bos_token);
    this.eosToken = tokenContent(tokenizerConfig.eos_token);
    this.bosTokenId = this.bosToken === null ? null : (tokenizer.token_to_id(this.bosToken) ?? null);
    const eos = new Set<number>();
    const eosFromTokenizer = this.eosToken === null ? undefined : tokenizer.token_to_id(this.eosToken);
    if (eosFromTokenizer !== undefined) eos.add(eosFromTokenizer);
    // generation_config.json wins over config.json (HF generate() reads it the same way); both may list several.
    const fromGeneration = idList(extras.generationConfig?.eos_token_id);
    const fromModel = idList(extras.modelConfig?.eos_token_id);
    for (const id of fromGeneration.length > 0 ? fromGeneration : fromModel) eos.add(id);
    this.eosTokenIds = [...eos].sort((a, b) => a - b);
    this.specialIds = new Set([...tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    const probe = tokenizer.encode('a b', { add_special_tokens: true }).ids;
    this.addsBos = this.bosTokenId !== null && probe[0] === this.bosTokenId;
    this.metaspace = tokenizer.token_to_id('▁') !== undefined || [...tokenizer.get_vocab(false).keys()].some((k) => k.startsWith('▁'));
    const source = extras.chatTemplateSource ?? pickChatTemplateSource(tokenizerConfig.chat_template);
    this.chatTemplate = source === null ? null : new ChatTemplate(source, { bosToken: this.bosToken, eosToken: this.eosToken });
  }

  encode(text: string, options: EncodeOptions): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  private piece(id: number): string {
    return this.tokenizer.id_to_token(id) ?? '';
  }

  tokenText(id: number): string {
    const piece = this.piece(id);
    const byte = BYTE_PIECE.exec(piece);
    if (byte) {
      const value = Number.parseInt(byte[1]!, 16);
      // A lone ASCII byte is a whole character; a UTF-8 fragment stays as its piece ("<0xE2>").
      return value < 0x80 ? String.fromCharCode(value) : piece;
    }
    if (this.specialIds.has(id)) return piece;
    if (this.metaspace) return piece.replaceAll('▁', ' ');
    return this.tokenizer.decode([id], { skip_special_tokens: false });
  }

  tokenBytes(id: number): number[] {
    const byte = BYTE_PIECE.exec(this.piece(id));
    if (byte) return [Number.parseInt(byte[1]!, 16)];
    return [...Buffer.from(this.tokenText(id), 'utf8')];
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  renderChat(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (this.chatTemplate === null) throw new Error('this model has no chat template');
    return this.chatTemplate.render(messages, addGenerationPrompt);
  }
}

/** Which files a checkpoint folder must have for text ↔ tokens. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/**
 * Loads the tokenizer of a local checkpoint folder. Reads tokenizer.json, tokenizer_config.json and,
 * when present, chat_template.jinja, generation_config.json and config.json (for eos ids). Where it
 * keeps every id, the text is cut into words before BPE (word-pieces.ts), here and in the workers.
 */
export function loadTokenizer(modelDir: string): HfTokenizer {
  const fileJson = readJson(join(modelDir, 'tokenizer.json'));
  if (fileJson === null) throw new Error(`${modelDir} has no tokenizer.json`);
  const { tokenizerJson, ...wordPieces } = withWordPieces(fileJson);
  const tokenizerConfig = readJson(join(modelDir, 'tokenizer_config.json')) ?? {};
  const templateFile = join(modelDir, 'chat_template.jinja');
  const chatTemplateSource = existsSync(templateFile) ? readFileSync(templateFile, 'utf8') : null;
  return new HfTokenizer(new Tokenizer(tokenizerJson, tokenizerConfig), tokenizerConfig, {
    generationConfig: readJson(join(modelDir, 'generation_config.json')),
    modelConfig: readJson(join(modelDir, 'config.json')),
    chatTemplateSource,
    tokenizerJson,
    wordPieces,
  });
}

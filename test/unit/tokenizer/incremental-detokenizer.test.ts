import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IncrementalDetokenizer } from '../../../src/tokenizer/index.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const tok = testTokenizer();

function streamText(prompt: string, completion: string): { deltas: string[]; text: string; ids: number[] } {
  const promptIds = tok.encode(prompt, { addSpecialTokens: true });
  const full = tok.encode(prompt + completion, { addSpecialTokens: true });
  // The completion's ids: whatever follows the prompt's ids when encoded together.
  assert.deepEqual(full.slice(0, promptIds.length), promptIds);
  const ids = full.slice(promptIds.length);
  const detok = new IncrementalDetokenizer(tok, promptIds);
  const deltas = ids.map((id) => detok.push(id));
  deltas.push(detok.flush());
  return { deltas, text: deltas.join(''), ids };
}

test('the first output token keeps its leading space', () => {
  const { deltas, text } = streamText('Say', ' Hello world');
  assert.equal(text, ' Hello world');
  assert.equal(deltas[0], ' Hello');
});

test('byte-fallback tokens of one character are held until the character is complete', () => {
  // "₿" is not in the vocabulary: it is <0xE2><0x82><0xBF>.
  const ids = tok.encode('a₿b', { addSpecialTokens: false });
  const pieces = ids.map((id) => tok.tokenText(id));
  assert.ok(pieces.includes('<0xE2>'), `expected byte fallback, got ${pieces.join(' ')}`);
  const detok = new IncrementalDetokenizer(tok, [1]);
  const deltas = ids.map((id) => detok.push(id));
  for (const d of deltas) assert.ok(!d.includes('\uFFFD'), `delta ${JSON.stringify(d)} has a replacement char`);
  assert.equal(deltas.join('') + detok.flush(), 'a₿b');
  const euroStart = pieces.indexOf('<0xE2>');
  assert.equal(deltas[euroStart], '');
  assert.equal(deltas[euroStart + 1], '');
});

test('multi-byte characters, newlines and emoji stream exactly', () => {
  const { text, deltas } = streamText('Q:', ' héllo 日本\n\n🎉 ok ₿x 🦀𝄞');
  assert.equal(text, ' héllo 日本\n\n🎉 ok ₿x 🦀𝄞');
  for (const d of deltas) assert.ok(!d.includes('\uFFFD'));
});

test('special tokens are skipped by default and kept on request', () => {
  const skip = new IncrementalDetokenizer(tok, [1]);
  assert.equal(skip.push(22557) + skip.push(2) + skip.flush(), 'Hello');
  const keep = new IncrementalDetokenizer(tok, [1], false);
  assert.equal((keep.push(22557) + keep.push(2) + keep.flush()).endsWith('</s>'), true);
});

test('a dangling byte comes out as U+FFFD at flush', () => {
  const d = new IncrementalDetokenizer(tok, [1]);
  const e2 = tok.encode('₿', { addSpecialTokens: false }).find((id) => tok.tokenText(id) === '<0xE2>');
  assert.ok(e2 !== undefined);
  assert.equal(d.push(e2), '');
  assert.equal(d.flush(), '\uFFFD');
});

test('property: streaming any text equals decoding it at once', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 40 }), (prompt, completion) => {
      const promptIds = tok.encode(prompt, { addSpecialTokens: true });
      const completionIds = tok.encode(completion, { addSpecialTokens: false });
      const detok = new IncrementalDetokenizer(tok, promptIds);
      let text = '';
      for (const id of completionIds) text += detok.push(id);
      text += detok.flush();
      const whole = tok.decode([...promptIds, ...completionIds]);
      const promptText = tok.decode(promptIds);
      assert.equal(promptText + text, whole);
    }),
    { numRuns: 300 },
  );
});

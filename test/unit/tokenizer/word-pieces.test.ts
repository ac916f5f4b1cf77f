// The word cut before BPE (src/tokenizer/word-pieces.ts): the same ids as the unmodified tokenizer.json on any
// text, applied to the Mistral-v0.1 tokenizer, refused where a merge could cross a cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Tokenizer } from '@huggingface/tokenizers';
import { withWordPieces } from '../../../src/tokenizer/word-pieces.js';
import { LLAMA2_TOKENIZER_DIR, testTokenizer } from '../../helpers/tokenizer-fixture.js';

type JsonObject = Record<string, unknown>;
const fileJson = (): JsonObject => JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')) as JsonObject;
const config = JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')) as JsonObject;

// the file as published, BPE over the whole text
const unsplit = new Tokenizer(fileJson(), config);
const plainIds = (text: string, special: boolean): number[] => unsplit.encode(text, { add_special_tokens: special }).ids;

test('the Mistral v0.1 tokenizer gets the cut, and loadTokenizer uses it', () => {
  const r = withWordPieces(fileJson());
  assert.equal(r.applied, true, r.reason);
  assert.deepEqual(testTokenizer().wordPieces, { applied: true });
  assert.deepEqual(testTokenizer().encoderSource?.tokenizerJson.pre_tokenizer, r.tokenizerJson.pre_tokenizer);
});

test('same ids as BPE over the whole text: fixed cases', () => {
  const tok = testTokenizer();
  const cases = [
    '', ' ', '   ', 'Hello world', '  two leading spaces', 'trailing spaces   ', 'a  b   c    d', 'tabs\tand\nnew\n\nlines \n x',
    'émoji 🙂 中文 字 ﷽', ' ▁ a literal ▁▁ marker▁inside', 'x'.repeat(400), `${'aaa'.repeat(50)}   ${'b'.repeat(70)}`,
    'def f(x):\n    return x  # indented\n\tpass', '<s> not special in text </s> [INST] hi [/INST]', '\u0378\u{10FFFF} unassigned',
  ];
  for (const text of cases) {
    for (const special of [true, false]) assert.deepEqual(tok.encode(text, { addSpecialTokens: special }), plainIds(text, special), JSON.stringify(text));
  }
});

test('same ids as BPE over the whole text: random texts (property)', () => {
  const tok = testTokenizer();
  const pieces = ['a', 'e', 'th', 'the', ' ', '  ', '\n', '\t', '▁', '.', ',', "'", '0', '42', 'é', '中', '🙂', 'Ω', '\u0378', 'ing', 'Hello', ' world'];
  const text = fc.array(fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 4 }), fc.string({ unit: 'grapheme', maxLength: 3 }), fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 60 }).map((a) => a.join(''));
  fc.assert(
    fc.property(text, fc.boolean(), (t, special) => {
      assert.deepEqual(tok.encode(t, { addSpecialTokens: special }), plainIds(t, special));
    }),
    { numRuns: 300, seed: 20261129 },
  );
});

test('the newer Metaspace-pre-tokenizer form of the same file: cut after it, same ids (property)', () => {
  // spaces made '▁' (and the first one prepended) by the pre-tokenizer instead of the normalizer
  const metaspaceForm = (): JsonObject => ({ ...fileJson(), normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } });
  const r = withWordPieces(metaspaceForm());
  assert.equal(r.applied, true, r.reason);
  const whole = new Tokenizer(metaspaceForm(), config);
  const cut = new Tokenizer(r.tokenizerJson, config);
  const text = fc.array(fc.oneof(fc.constantFrom(' ', '  ', 'the', 'Hello', '\n', '▁', 'é', '🙂'), fc.string({ maxLength: 4 })), { maxLength: 40 }).map((a) => a.join(''));
  fc.assert(
    fc.property(text, fc.boolean(), (t, special) => {
      assert.deepEqual(cut.encode(t, { add_special_tokens: special }).ids, whole.encode(t, { add_special_tokens: special }).ids);
    }),
    { numRuns: 200, seed: 20261129 },
  );
  assert.deepEqual(cut.encode('Hello world', { add_special_tokens: true }).ids, [1, 22557, 1526]);
});

test('not applied where a merge could cross a cut, or where the file already splits words', () => {
  const crossing = fileJson();
  const model = crossing.model as { vocab: Record<string, number>; merges: unknown[] };
  model.vocab['a▁b'] = Object.keys(model.vocab).length;
  const r1 = withWordPieces(crossing);
  assert.equal(r1.applied, false);
  assert.match(r1.reason ?? '', /a▁b/);
  assert.equal(r1.tokenizerJson, crossing);

  const merged = fileJson();
  (merged.model as { merges: unknown[] }).merges.push(Array.isArray((merged.model as { merges: unknown[] }).merges[0]) ? ['x', '▁y'] : 'x ▁y');
  assert.equal(withWordPieces(merged).applied, false);

  const preTokenized = { ...fileJson(), pre_tokenizer: { type: 'Whitespace' } };
  assert.deepEqual(withWordPieces(preTokenized), { tokenizerJson: preTokenized, applied: false, reason: 'it has a pre-tokenizer other than Metaspace' });

  const suffixed = fileJson();
  (suffixed.model as JsonObject).end_of_word_suffix = '</w>';
  assert.equal(withWordPieces(suffixed).applied, false);

  const wordLevel = { ...fileJson(), model: { type: 'WordLevel', vocab: {} } };
  assert.equal(withWordPieces(wordLevel).applied, false);
});

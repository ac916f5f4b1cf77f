import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTokenizer, pickChatTemplateSource } from '../../../src/tokenizer/index.js';
import { BOS_TEMPLATE, makeModelDir, testTokenizer } from '../../helpers/tokenizer-fixture.js';

test('encodes with BOS and decodes back, ids as Mistral v0.1', () => {
  const tok = testTokenizer();
  assert.deepEqual(tok.encode('Hello world', { addSpecialTokens: true }), [1, 22557, 1526]);
  assert.deepEqual(tok.encode('Hello world', { addSpecialTokens: false }), [22557, 1526]);
  assert.equal(tok.decode([1, 22557, 1526]), 'Hello world');
  assert.equal(tok.decode([1, 22557, 1526], { skipSpecialTokens: false }).includes('<s>'), true);
  assert.equal(tok.bosToken, '<s>');
  assert.equal(tok.bosTokenId, 1);
  assert.deepEqual(tok.eosTokenIds, [2]);
  assert.equal(tok.addsBos, true);
  assert.equal(tok.vocabSize, 32000);
});

test('token text for logprobs keeps the leading space and shows byte tokens', () => {
  const tok = testTokenizer();
  assert.equal(tok.tokenText(22557), ' Hello');
  assert.equal(tok.tokenText(13), '\n'); // <0x0A>
  assert.equal(tok.tokenText(1), '<s>');
  assert.deepEqual(tok.tokenBytes(13), [10]);
  assert.deepEqual(tok.tokenBytes(22557), [32, 72, 101, 108, 108, 111]);
  assert.equal(tok.isSpecial(2), true);
  assert.equal(tok.isSpecial(22557), false);
});

test('renders a ChatML template with the generation prompt', () => {
  const tok = testTokenizer();
  const text = tok.renderChat([
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ]);
  assert.equal(text, '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(tok.renderChat([{ role: 'user', content: 'Hi' }], false), '<|im_start|>user\nHi<|im_end|>\n');
});

test('a template that starts with bos_token renders it, and raise_exception surfaces as an error', () => {
  const tok = testTokenizer(BOS_TEMPLATE);
  assert.equal(tok.renderChat([{ role: 'user', content: 'Hi' }]), '<s>[INST] Hi [/INST]');
  assert.throws(() => tok.renderChat([{ role: 'system', content: 'x' }]), /Only user and assistant roles/);
});

test('a base model has no chat template', () => {
  const tok = testTokenizer(null);
  assert.equal(tok.chatTemplate, null);
  assert.throws(() => tok.renderChat([{ role: 'user', content: 'Hi' }]), /no chat template/);
});

test('eos ids come from generation_config.json (several allowed) on top of the tokenizer eos', () => {
  const { dir, cleanup } = makeModelDir({ generationConfig: { eos_token_id: [2, 32000] }, modelConfig: { eos_token_id: 7 } });
  try {
    assert.deepEqual(loadTokenizer(dir).eosTokenIds, [2, 32000]);
  } finally {
    cleanup();
  }
  const second = makeModelDir({ modelConfig: { eos_token_id: 7 } });
  try {
    assert.deepEqual(loadTokenizer(second.dir).eosTokenIds, [2, 7]);
  } finally {
    second.cleanup();
  }
});

test('a chat_template list picks the default entry', () => {
  assert.equal(pickChatTemplateSource([{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }]), 'D');
  assert.equal(pickChatTemplateSource([{ name: 'tool_use', template: 'T' }]), 'T');
  assert.equal(pickChatTemplateSource('  '), null);
  assert.equal(pickChatTemplateSource(undefined), null);
});

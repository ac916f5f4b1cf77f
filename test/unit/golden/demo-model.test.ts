import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, openSync, readSync, closeSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadGoldenFixture } from '../../helpers/golden.js';

const MODELS_DIR = fileURLToPath(new URL('../../../models/', import.meta.url));

function safetensorsHeader(path: string): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    const header = JSON.parse(buf.toString('utf8'));
    delete header.__metadata__;
    return header;
  } finally {
    closeSync(fd);
  }
}

test('demo model: files present', () => {
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md']) {
    assert.ok(existsSync(join(MODELS_DIR, f)), `models/${f}`);
  }
});

test('demo model: bf16 weights within 12 MB whose tensor bytes fill the file', () => {
  const path = join(MODELS_DIR, 'model.safetensors');
  const header = safetensorsHeader(path);
  let bytes = 0;
  let params = 0;
  for (const [name, t] of Object.entries(header)) {
    assert.equal(t.dtype, 'BF16', name);
    const count = t.shape.reduce((a, b) => a * b, 1);
    assert.equal(t.data_offsets[1] - t.data_offsets[0], count * 2, `${name} byte size`);
    bytes += count * 2;
    params += count;
  }
  assert.ok(bytes <= 12_000_000, `${bytes} bytes of weights`);
  const headerLen = Number(readFileSync(path).readBigUInt64LE(0));
  assert.equal(statSync(path).size, 8 + headerLen + bytes);
  const config = JSON.parse(readFileSync(join(MODELS_DIR, 'config.json'), 'utf8'));
  assert.equal(config.vocab_size, 32000);
  assert.deepEqual(header['model.embed_tokens.weight']!.shape, [32000, config.hidden_size]);
  assert.ok(params > 5_000_000, `${params} parameters`);
});

test('demo model: tokenizer config has bos/eos and a ChatML template that starts with the bos', () => {
  const cfg = JSON.parse(readFileSync(join(MODELS_DIR, 'tokenizer_config.json'), 'utf8'));
  assert.equal(cfg.bos_token, '<s>');
  assert.equal(cfg.eos_token, '</s>');
  assert.ok(cfg.chat_template.startsWith('{{ bos_token }}'));
  assert.ok(cfg.chat_template.includes('<|im_start|>'));
  const gen = JSON.parse(readFileSync(join(MODELS_DIR, 'generation_config.json'), 'utf8'));
  assert.deepEqual([gen.bos_token_id, gen.eos_token_id, gen.pad_token_id], [1, 2, 0]);
  const tok = JSON.parse(readFileSync(join(MODELS_DIR, 'tokenizer.json'), 'utf8'));
  assert.equal(Object.keys(tok.model.vocab).length, 32000);
});

test('demo model: its goldens point at models/', () => {
  const fx = loadGoldenFixture('demo');
  assert.equal(fx.checkpointDir.replace(/\/$/, ''), MODELS_DIR.replace(/\/$/, ''));
  const config = JSON.parse(readFileSync(join(MODELS_DIR, 'config.json'), 'utf8'));
  assert.equal(fx.json.dims.hiddenSize, config.hidden_size);
});

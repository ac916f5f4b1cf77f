import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { makeCheckpointCommand, presetsCommand, presetRows, type CommandIo } from '../../../src/model/commands.js';
import { loadCheckpoint, PRESETS_DIR } from '../../../src/model/index.js';

function capture(): CommandIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: new Writable({ write(c, _e, cb) { out += String(c); cb(); } }),
    stderr: new Writable({ write(c, _e, cb) { err += String(c); cb(); } }),
    out: () => out,
    err: () => err,
  };
}

test('presets prints every preset with params, state bytes and KV bytes', async () => {
  const io = capture();
  assert.equal(await presetsCommand([], io), 0);
  const lines = io.out().trim().split('\n');
  assert.equal(lines.length, 7);
  assert.match(lines[0]!, /^preset\s+params\s+dtype\s+weights\s+state\/seq bf16\s+state\/seq fp32\s+KV\/token bf16\s+KV\/page\(16\) bf16\s+max pos$/);
  assert.match(lines.find((l) => l.startsWith('zamba2-1.2b '))!, /1\.2151 B\s+bfloat16\s+2\.43 GB\s+40,838,144\s+81,676,288\s+98,304\s+1,572,864\s+4096/);
  assert.match(lines.find((l) => l.startsWith('zamba2-7b-instruct'))!, /7\.3567 B\s+bfloat16\s+14\.7 GB\s+77,925,888\s+155,851,776\s+372,736\s+5,963,776\s+16384/);
  const j = capture();
  assert.equal(await presetsCommand(['--json'], j), 0);
  assert.deepEqual(JSON.parse(j.out()), presetRows());
  assert.equal(await presetsCommand(['--bogus'], capture()), 2);
});

test('make-checkpoint: argument errors exit 2 with usage', async () => {
  for (const argv of [[], ['--preset', 'zamba2-1.2b'], ['--out', '/tmp/x'], ['--preset', 'zamba2-1.2b', '--out', '/tmp/x', '--seed', '-1'], ['--nope']]) {
    const io = capture();
    assert.equal(await makeCheckpointCommand(argv, io), 2, argv.join(' '));
    assert.match(io.err(), /make-checkpoint|usage/);
  }
  const io = capture();
  assert.equal(await makeCheckpointCommand(['--preset', 'zamba2-99b', '--out', '/tmp/never'], io), 1);
  assert.match(io.err(), /unknown preset "zamba2-99b"/);
  const bad = capture();
  assert.equal(await makeCheckpointCommand(['--preset', 'zamba2-1.2b', '--out', '/tmp/never', '--dtype', 'int4'], bad), 1);
  assert.match(bad.err(), /unsupported dtype "int4"/);
});

test('make-checkpoint --config writes a loadable sharded checkpoint with the progress bar', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mkck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // the 1.2B layer plan (38 layers, hybrid at 5..35, adapters, rope) at a small width
  const preset = JSON.parse(readFileSync(join(PRESETS_DIR, 'zamba2-1.2b.json'), 'utf8'));
  const small = { ...preset, hidden_size: 64, n_mamba_heads: 8, mamba_headdim: 16, mamba_d_state: 16, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 4,
    attention_head_dim: 32, attention_hidden_size: 128, kv_channels: 16, adapter_rank: 8, vocab_size: 256 };
  writeFileSync(join(dir, 'small.json'), JSON.stringify(small));
  const out = join(dir, 'ck');
  const io = capture();
  const code = await makeCheckpointCommand(['--config', join(dir, 'small.json'), '--out', out, '--seed', '3', '--dtype', 'f16', '--max-shard-bytes', '300000'], io);
  assert.equal(code, 0, io.err());
  assert.match(io.out(), /wrote .*small\.json \(float16, [\d.]+ MB in \d+ files, seed 3\)/);
  assert.match(io.err(), /writing .*small\.json \[#+\] 100%/);
  assert.ok(readdirSync(out).filter((f) => f.endsWith('.safetensors')).length >= 3);
  const ck = await loadCheckpoint(out);
  t.after(() => ck.close());
  assert.equal(ck.dims.dtype, 'float16');
  assert.deepEqual(ck.dims.hybridLayerIds, [5, 11, 17, 23, 29, 35]);
  assert.equal(ck.weights.sharedBlocks[0]!.qProj.name, 'model.layers.5.shared_transformer.self_attn.q_proj.weight');
  assert.equal(ck.weights.hybridAdapters[5]!.k!.w1.name, 'model.layers.5.shared_transformer.self_attn.linear_k_adapter_list.5.1.weight');
  assert.deepEqual(ck.weights.layers[37]!.mixer.inProj.shape, [2 * 128 + 2 * 16 + 8, 64]);
  assert.ok(ck.weights.layers[37]!.mixer.d.toFloat32().every((x) => x === 1));
});

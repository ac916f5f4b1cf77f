import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint, checkpointTensorSpecs, openSafetensorsCheckpoint, parameterCount } from '../../../src/model/index.js';
import { makeCheckpoint } from '../../../src/model/make-checkpoint.js';
import { writeSafetensors } from '../../../src/model/safetensors-writer.js';
import { smallDimsOneBlock, smallDimsTwoBlocks } from './small-dims.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Tensor = { name: string; dtype: 'BF16' | 'F16' | 'F32'; shape: number[]; data: Float32Array };

/** Every tensor of a checkpoint folder, widened (small fixtures only). */
function readAllTensors(dir: string): Tensor[] {
  const src = openSafetensorsCheckpoint(dir);
  try {
    return src.names().map((n) => {
      const v = src.get(n)!;
      return { name: n, dtype: v.dtype, shape: [...v.shape], data: v.toFloat32() };
    });
  } finally {
    src.close();
  }
}

/** Rewrites the checkpoint's weights as one model.safetensors after `edit`. */
function rewrite(dir: string, edit: (tensors: Tensor[]) => Tensor[]): void {
  const tensors = edit(readAllTensors(dir));
  for (const f of readdirSync(dir)) if (f.endsWith('.safetensors') || f.endsWith('.index.json')) rmSync(join(dir, f));
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
}

async function assertLoadFails(dir: string, re: RegExp): Promise<void> {
  await assert.rejects(loadCheckpoint(dir), (err: Error) => {
    assert.match(err.message, re);
    assert.equal(err.message.includes('\n'), false, err.message);
    return true;
  });
}

function softplus(x: number): number {
  return Math.log1p(Math.exp(x));
}

test('round trip, one block with q/k/v adapters and rope (bf16)', async (t) => {
  const dir = tmp(t);
  const dims = smallDimsOneBlock();
  const made = makeCheckpoint({ dims, outDir: dir, seed: 7 });
  assert.equal(made.shardCount, 1);
  assert.equal(made.dtype, 'bfloat16');
  assert.equal(made.weightBytes, parameterCount(dims) * 2);
  const ck = await loadCheckpoint(dir);
  t.after(() => ck.close());
  assert.deepEqual(ck.dims, dims);
  assert.equal(ck.format, 'hf-v4');
  assert.deepEqual(ck.unusedTensorNames, []);
  const w = ck.weights;
  assert.equal(w.layers.length, 4);
  assert.deepEqual(w.layers.map((l) => l.kind), ['mamba', 'hybrid', 'mamba', 'hybrid']);
  assert.equal(w.layers[0]!.linear, null);
  assert.equal(w.layers[1]!.linear!.name, 'model.layers.1.linear.weight');
  assert.equal(w.layers[1]!.mixer.inProj.name, 'model.layers.1.mamba_decoder.mamba.in_proj.weight');
  assert.deepEqual(w.layers[1]!.mixer.inProj.shape, [dims.inProjOut, 32]);
  assert.deepEqual(w.layers[0]!.mixer.conv1dWeight.shape, [dims.convDim, 1, 4]);
  assert.equal(w.sharedBlocks.length, 1);
  assert.equal(w.sharedBlocks[0]!.qProj.name, 'model.layers.1.shared_transformer.self_attn.q_proj.weight');
  assert.deepEqual(w.sharedBlocks[0]!.oProj.shape, [32, 64]);
  assert.equal(w.hybridAdapters.length, 2);
  assert.equal(w.hybridAdapters[1]!.q!.w0.name, 'model.layers.1.shared_transformer.self_attn.linear_q_adapter_list.1.0.weight');
  assert.deepEqual(w.hybridAdapters[1]!.v!.w1.shape, [64, 4]);
  assert.deepEqual(w.hybridAdapters[0]!.gateUp!.w1.shape, [128, 4]);
  assert.equal(w.lmHead, w.embedTokens);
  assert.deepEqual(w.finalNorm.shape, [32]);
  // initialisation: norms 1, A = -exp(A_log) in [-16, -1], dt = softplus(dt_bias) in [0.001, 0.1]
  assert.ok(w.finalNorm.toFloat32().every((x) => x === 1));
  const aLog = w.layers[2]!.mixer.aLog.toFloat32();
  assert.ok(aLog.every((x) => x >= 0 && x <= Math.log(16) + 0.02), String(aLog));
  const dt = Array.from(w.layers[2]!.mixer.dtBias.toFloat32(), softplus);
  assert.ok(dt.every((x) => x > 0.00095 && x < 0.105), String(dt));
  const embed = w.embedTokens.toFloat32();
  const std = Math.sqrt(embed.reduce((a, x) => a + x * x, 0) / embed.length);
  assert.ok(std > 0.015 && std < 0.025, `embed std ${std}`);
  // files of the hub layout
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) assert.ok(statSync(join(dir, f)).size > 0, f);
  assert.deepEqual(ck.files.generation!.eosTokenIds, [2]);
  assert.equal(ck.files.tokenizerJsonPath, join(dir, 'tokenizer.json'));
  assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).layers_block_type[1], 'hybrid');
});

test('round trip, two blocks, ngroups 2, no rope, head dim 20 (fp32); adapters keep the global index', async (t) => {
  const dir = tmp(t);
  const dims = smallDimsTwoBlocks();
  makeCheckpoint({ dims, outDir: dir, seed: 3 });
  const ck = await loadCheckpoint(dir);
  t.after(() => ck.close());
  assert.deepEqual(ck.dims, dims);
  assert.equal(ck.dims.attentionHeadDim, 20);
  assert.deepEqual(ck.dims.hybridBlockIds, [0, 1, 0]);
  const w = ck.weights;
  assert.equal(w.sharedBlocks[0]!.gateUp.name, 'model.layers.1.shared_transformer.feed_forward.gate_up_proj.weight');
  assert.equal(w.sharedBlocks[1]!.gateUp.name, 'model.layers.3.shared_transformer.feed_forward.gate_up_proj.weight');
  assert.equal(w.hybridAdapters[2]!.gateUp!.w0.name, 'model.layers.1.shared_transformer.feed_forward.gate_up_proj_adapter_list.2.0.weight');
  assert.equal(w.hybridAdapters[1]!.gateUp!.w1.name, 'model.layers.3.shared_transformer.feed_forward.gate_up_proj_adapter_list.1.1.weight');
  assert.equal(w.hybridAdapters[0]!.q, null);
  assert.equal(w.layers[4]!.mixer.norm.dtype, 'F32');
  assert.deepEqual(w.layers[4]!.mixer.norm.shape, [80]);
  assert.deepEqual(w.layers[4]!.mixer.inProj.shape, [2 * 80 + 2 * 2 * 8 + 8, 40]);
  assert.equal(readAllTensors(dir).length, checkpointTensorSpecs(dims).length);
  // no tensor names a block for an invocation it does not serve
  assert.equal(readAllTensors(dir).some((x) => /layers\.3\.shared_transformer\..*adapter_list\.(0|2)\./.test(x.name)), false);
});

test('same seed gives the same bytes, another seed other bytes; dtype override', (t) => {
  const a = tmp(t), b = tmp(t), c = tmp(t);
  const dims = smallDimsOneBlock();
  makeCheckpoint({ dims, outDir: a, seed: 1 });
  makeCheckpoint({ dims, outDir: b, seed: 1 });
  makeCheckpoint({ dims, outDir: c, seed: 2, dtype: 'fp32' });
  assert.deepEqual(readFileSync(join(a, 'model.safetensors')), readFileSync(join(b, 'model.safetensors')));
  const ta = readAllTensors(a), tc = readAllTensors(c);
  const inA = ta.find((x) => x.name.endsWith('layers.0.mamba.in_proj.weight'))!;
  const inC = tc.find((x) => x.name.endsWith('layers.0.mamba.in_proj.weight'))!;
  assert.equal(inC.dtype, 'F32');
  assert.notDeepEqual(inA.data, inC.data);
  assert.equal(JSON.parse(readFileSync(join(c, 'config.json'), 'utf8')).torch_dtype, 'float32');
});

test('sharded round trip equals the single file', async (t) => {
  const single = tmp(t), sharded = tmp(t);
  const dims = smallDimsTwoBlocks();
  makeCheckpoint({ dims, outDir: single, seed: 5 });
  const made = makeCheckpoint({ dims, outDir: sharded, seed: 5, maxShardBytes: 40_000 });
  assert.ok(made.shardCount >= 3, `shards ${made.shardCount}`);
  assert.ok(made.files.includes('model.safetensors.index.json'));
  assert.ok(made.files.includes(`model-00001-of-${String(made.shardCount).padStart(5, '0')}.safetensors`));
  const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(index.metadata.total_size, made.weightBytes);
  const one = await loadCheckpoint(single);
  const many = await loadCheckpoint(sharded);
  t.after(() => { one.close(); many.close(); });
  assert.equal(many.safetensorsFiles.length, made.shardCount);
  const a = readAllTensors(single), b = new Map(readAllTensors(sharded).map((x) => [x.name, x]));
  assert.equal(a.length, b.size);
  for (const x of a) assert.deepEqual(b.get(x.name)!.data, x.data, x.name);
  assert.deepEqual(many.weights.layers[5]!.mixer.outProj.bytes(), one.weights.layers[5]!.mixer.outProj.bytes());
  // re-running into the same folder without sharding removes the stale shards and index
  makeCheckpoint({ dims, outDir: sharded, seed: 5 });
  assert.deepEqual(readdirSync(sharded).filter((f) => f.includes('safetensors')), ['model.safetensors']);
});

test('duplicated shared-block copies are ignored, a lone later copy is used, lm_head honoured, extras reported', async (t) => {
  const dir = tmp(t);
  const dims = smallDimsTwoBlocks();
  makeCheckpoint({ dims, outDir: dir, seed: 9 });
  // re-saved without tying: block 0 copied under layer 4, block 1 only under layer 3
  rewrite(dir, (ts) => [
    ...ts,
    ...ts.filter((x) => x.name.startsWith('model.layers.1.shared_transformer.')).map((x) => ({ ...x, name: x.name.replace('layers.1.', 'layers.4.'), data: new Float32Array(x.data.length) })),
    { name: 'lm_head.weight', dtype: 'F32', shape: [48, 40], data: new Float32Array(48 * 40).fill(0.5) },
    { name: 'model.extra.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) },
  ]);
  const ck = await loadCheckpoint(dir);
  t.after(() => ck.close());
  assert.equal(ck.weights.sharedBlocks[0]!.qProj.name, 'model.layers.1.shared_transformer.self_attn.q_proj.weight');
  assert.ok(ck.weights.sharedBlocks[0]!.qProj.toFloat32().some((x) => x !== 0), 'the first copy, not the zeroed duplicate');
  assert.equal(ck.weights.lmHead.name, 'lm_head.weight');
  assert.deepEqual(ck.unusedTensorNames, ['model.extra.weight']);
  ck.close();

  // only a later copy of block 0 exists (first copy dropped): the fallback finds it
  rewrite(dir, (ts) => ts.filter((x) => !x.name.startsWith('model.layers.1.shared_transformer.self_attn.q_proj')));
  const ck2 = await loadCheckpoint(dir);
  assert.equal(ck2.weights.sharedBlocks[0]!.qProj.name, 'model.layers.4.shared_transformer.self_attn.q_proj.weight');
  ck2.close();
});

test('transformers 5.x config.json loads to the same dims', async (t) => {
  const dir = tmp(t);
  const dims = smallDimsOneBlock();
  makeCheckpoint({ dims, outDir: dir, seed: 1 });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  cfg.layers_block_type = cfg.layers_block_type.map((k: string) => (k === 'mamba' ? 'linear_attention' : k));
  cfg.rope_parameters = { rope_theta: cfg.rope_theta, rope_type: 'default' };
  cfg.dtype = cfg.torch_dtype;
  delete cfg.rope_theta; delete cfg.torch_dtype;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const ck = await loadCheckpoint(dir);
  t.after(() => ck.close());
  assert.equal(ck.format, 'hf-v5');
  assert.deepEqual(ck.dims, dims);
});

test('a config without dtype (legacy) takes the dtype of the stored embedding', async (t) => {
  const dir = tmp(t);
  makeCheckpoint({ dims: smallDimsOneBlock(), outDir: dir, seed: 1, dtype: 'f16' });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  delete cfg.torch_dtype;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const ck = await loadCheckpoint(dir);
  t.after(() => ck.close());
  assert.equal(ck.dims.dtype, 'float16');
});

test('malformed checkpoints: one line naming the problem', async (t) => {
  const dims = smallDimsOneBlock();
  const fresh = (): string => {
    const dir = tmp(t);
    makeCheckpoint({ dims, outDir: dir, seed: 1 });
    return dir;
  };

  let dir = fresh();
  rewrite(dir, (ts) => ts.filter((x) => x.name !== 'model.layers.2.mamba.D'));
  await assertLoadFails(dir, /missing tensor "model\.layers\.2\.mamba\.D" \(expected shape \[4\]\)/);

  dir = fresh();
  rewrite(dir, (ts) => ts.filter((x) => !x.name.endsWith('linear_k_adapter_list.1.1.weight')));
  await assertLoadFails(dir, /missing tensor "model\.layers\.1\.shared_transformer\.self_attn\.linear_k_adapter_list\.1\.1\.weight" \(expected shape \[64, 4\]\)/);

  dir = fresh();
  rewrite(dir, (ts) => ts.map((x) => (x.name === 'model.layers.3.mamba_decoder.mamba.conv1d.weight' ? { ...x, shape: [dims.convDim, 4], data: x.data } : x)));
  await assertLoadFails(dir, /tensor "model\.layers\.3\.mamba_decoder\.mamba\.conv1d\.weight" has shape \[80, 4\], expected \[80, 1, 4\]/);

  dir = fresh();
  writeFileSync(join(dir, 'config.json'), '{"hidden_size": 32,,}');
  await assertLoadFails(dir, /config\.json: invalid JSON/);

  dir = fresh();
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  cfg.mamba_d_state = -1;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  await assertLoadFails(dir, /config\.json: field "mamba_d_state"/);

  dir = fresh();
  rmSync(join(dir, 'config.json'));
  await assertLoadFails(dir, /config\.json: missing/);

  dir = fresh();
  const st = join(dir, 'model.safetensors');
  truncateSync(st, statSync(st).size - 100);
  await assertLoadFails(dir, /model\.safetensors: tensor "[^"]+": data ends at byte \d+, past the end of the file .*truncated/);

  dir = fresh();
  // point one tensor's data_offsets past the end while keeping the header length
  const bytes = readFileSync(join(dir, 'model.safetensors'));
  const len = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + len).toString();
  const m = /"model\.final_layernorm\.weight":\{"dtype":"BF16","shape":\[32\],"data_offsets":\[(\d+),(\d+)\]\}/.exec(header)!;
  const moved = header.replace(m[0], m[0].replace(`[${m[1]},${m[2]}]`, `[${Number(m[1]) + 10 ** 7},${Number(m[2]) + 10 ** 7}]`));
  const newLen = Buffer.alloc(8);
  newLen.writeBigUInt64LE(BigInt(Buffer.byteLength(moved)));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([newLen, Buffer.from(moved), bytes.subarray(8 + len)]));
  await assertLoadFails(dir, /tensor "model\.final_layernorm\.weight": data ends at byte \d+, past the end of the file/);

  dir = fresh();
  rewrite(dir, (ts) => ts.map((x) => ({ ...x, name: x.name.replace(/^model\.layers\./, 'model.mamba_layers.') })));
  await assertLoadFails(dir, /pre-transformers Zyphra layout \(e\.g\. "model\.mamba_layers\.[^"]+"\)/);

  await assertLoadFails(join(tmp(t), 'nope'), /nope: not a folder/);
});

// The committed checkpoints written by transformers (test/golden/fixtures/a, b; the demo model in
// models/) load through loadCheckpoint with every tensor mapped: the loader agrees with how
// transformers 5.x actually names and stores Zamba2 weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadCheckpoint, checkpointTensorSpecs, openSafetensorsCheckpoint, type Zamba2Checkpoint } from '../../../src/model/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** transformers stored exactly the tensors our writer writes: same names, same shapes. */
function assertSameTensorsAsOurWriter(ck: Zamba2Checkpoint): void {
  const src = openSafetensorsCheckpoint(ck.dir);
  try {
    const stored = new Map(src.names().map((n) => [n, [...src.get(n)!.shape]]));
    const ours = checkpointTensorSpecs(ck.dims);
    assert.equal(stored.size, ours.length);
    for (const s of ours) assert.deepEqual(stored.get(s.name), s.shape, s.name);
  } finally {
    src.close();
  }
}

test('fixture a (transformers 5.x format: one block, q/k/v adapters, rope)', async (t) => {
  const ck = await loadCheckpoint(`${root}test/golden/fixtures/a`);
  t.after(() => ck.close());
  assert.equal(ck.format, 'hf-v5');
  const d = ck.dims;
  assert.deepEqual([d.numMemBlocks, d.useSharedAttentionAdapter, d.useMemRope, d.mambaNGroups], [1, true, true, 1]);
  assert.deepEqual(d.hybridLayerIds, [2, 5]);
  assert.equal(d.dtype, 'bfloat16');
  assert.deepEqual(ck.unusedTensorNames, []);
  assert.equal(ck.weights.sharedBlocks[0]!.kProj.name, 'model.layers.2.shared_transformer.self_attn.k_proj.weight');
  assert.equal(ck.weights.hybridAdapters[1]!.q!.w0.name, 'model.layers.2.shared_transformer.self_attn.linear_q_adapter_list.1.0.weight');
  assert.equal(ck.weights.embedTokens.dtype, 'BF16');
  assert.deepEqual(ck.files.generation?.eosTokenIds, [2]);
  assertSameTensorsAsOurWriter(ck);
});

test('fixture b (v4 format: two blocks, ngroups 2, no rope, head dim 40)', async (t) => {
  const ck = await loadCheckpoint(`${root}test/golden/fixtures/b`);
  t.after(() => ck.close());
  assert.equal(ck.format, 'hf-v4');
  const d = ck.dims;
  assert.deepEqual([d.numMemBlocks, d.useSharedAttentionAdapter, d.useMemRope, d.mambaNGroups, d.attentionHeadDim], [2, false, false, 2, 40]);
  assert.deepEqual(d.hybridBlockIds, [0, 1, 0]);
  assert.deepEqual(ck.unusedTensorNames, []);
  assert.equal(ck.weights.sharedBlocks[1]!.down.name, 'model.layers.3.shared_transformer.feed_forward.down_proj.weight');
  assert.equal(ck.weights.hybridAdapters[2]!.gateUp!.w0.name, 'model.layers.1.shared_transformer.feed_forward.gate_up_proj_adapter_list.2.0.weight');
  assertSameTensorsAsOurWriter(ck);
});

test('the bundled demo model in models/ loads', async (t) => {
  const ck = await loadCheckpoint(`${root}models`);
  t.after(() => ck.close());
  assert.deepEqual(ck.unusedTensorNames, []);
  assert.equal(ck.dims.vocabSize, 32000);
  assert.ok(ck.files.tokenizerJsonPath);
  assert.equal(ck.weights.layers.length, ck.dims.numLayers);
  assertSameTensorsAsOurWriter(ck);
});

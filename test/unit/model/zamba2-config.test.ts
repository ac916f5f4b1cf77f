import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseZamba2Config, parseZamba2ConfigText, dimsToHubConfig, blockStorageLayerIds } from '../../../src/model/zamba2-config.js';

/** A transformers 4.x hub-format config (1.2B family shape, small). */
function v4Config(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'zamba2', vocab_size: 512, hidden_size: 64, num_hidden_layers: 6,
    layers_block_type: ['mamba', 'hybrid', 'mamba', 'hybrid', 'mamba', 'hybrid'],
    mamba_d_state: 16, mamba_d_conv: 4, mamba_expand: 2, mamba_ngroups: 1, n_mamba_heads: 8,
    intermediate_size: 256, num_attention_heads: 4, num_mem_blocks: 1,
    use_shared_attention_adapter: true, adapter_rank: 8, use_mem_rope: true, rope_theta: 10000,
    rms_norm_eps: 1e-5, torch_dtype: 'bfloat16', ...over,
  };
}

test('v4 hub format: derived values computed once', () => {
  const { dims, format } = parseZamba2Config(v4Config());
  assert.equal(format, 'hf-v4');
  assert.equal(dims.attentionHeadDim, 32);
  assert.equal(dims.attentionHiddenSize, 128);
  assert.equal(dims.kvChannels, 16);
  assert.equal(dims.dInner, 128);
  assert.equal(dims.mambaHeadDim, 16);
  assert.equal(dims.convDim, 128 + 2 * 16);
  assert.equal(dims.inProjOut, 2 * 128 + 2 * 16 + 8);
  assert.deepEqual(dims.hybridLayerIds, [1, 3, 5]);
  assert.deepEqual(dims.hybridBlockIds, [0, 0, 0]);
  assert.equal(dims.dtype, 'bfloat16');
  assert.equal(dims.ropeTheta, 10000);
  assert.equal(dims.numKeyValueHeads, 4);
  assert.equal(dims.tieWordEmbeddings, true);
});

test('v5 format: linear_attention, layer_types, rope_parameters, dtype, head_dim alias', () => {
  const raw = v4Config({ num_mem_blocks: 2, mamba_ngroups: 2, dtype: 'float32', head_dim: 32 });
  delete raw['layers_block_type']; delete raw['rope_theta']; delete raw['torch_dtype'];
  raw['layer_types'] = ['linear_attention', 'hybrid', 'linear_attention', 'hybrid', 'linear_attention', 'hybrid'];
  raw['rope_parameters'] = { rope_theta: 5000, rope_type: 'default' };
  const { dims, format } = parseZamba2Config(raw);
  assert.equal(format, 'hf-v5');
  assert.deepEqual(dims.layerKinds, ['mamba', 'hybrid', 'mamba', 'hybrid', 'mamba', 'hybrid']);
  assert.deepEqual(dims.hybridBlockIds, [0, 1, 0]);
  assert.deepEqual(blockStorageLayerIds(dims), [1, 3]);
  assert.equal(dims.ropeTheta, 5000);
  assert.equal(dims.dtype, 'float32');
  assert.equal(dims.convDim, 128 + 2 * 2 * 16);
});

test('legacy Zyphra keys and m/g layer spellings', () => {
  const legacy = {
    num_layers: 4, hidden_size: 64, state_size: 16, conv_dimension: 4, expansion_factor: 2,
    ffn_hidden_size: 256, lora_rank: 8, use_shared_attention_lora: false, kv_channels: 16,
    num_attention_heads: 4, padded_vocab_size: 300, num_mem_blocks: 1, use_mem_rope: false,
    layer_mapping: ['m', 'g', 'm', 'g'],
  };
  const { dims, format } = parseZamba2Config(legacy);
  assert.equal(format, 'legacy');
  assert.equal(dims.vocabSize, 300);
  assert.equal(dims.mambaDState, 16);
  assert.equal(dims.intermediateSize, 256);
  assert.equal(dims.adapterRank, 8);
  assert.equal(dims.kvChannels, 16);
  assert.equal(dims.nMambaHeads, 2, 'legacy mamba head dim defaults to 64');
  assert.deepEqual(dims.hybridLayerIds, [1, 3]);
  assert.equal(dims.dtype, 'float32');
  // m/g inside the HF key as well
  assert.deepEqual(parseZamba2Config(v4Config({ layers_block_type: ['m', 'g', 'm', 'g', 'm', 'g'] })).dims.hybridLayerIds, [1, 3, 5]);
});

test('use_long_context: 16k positions; theta rescaled for v4 configs only', () => {
  const v4 = parseZamba2Config(v4Config({ use_long_context: true }));
  assert.equal(v4.dims.maxPositionEmbeddings, 16384);
  assert.equal(v4.storedRopeTheta, 10000);
  assert.ok(Math.abs(v4.dims.ropeTheta - 10000 * Math.pow(8, 32 / 30)) < 1e-6);
  const raw5 = v4Config({ use_long_context: true, rope_parameters: { rope_theta: 10000, rope_type: 'default' } });
  delete raw5['rope_theta'];
  const v5 = parseZamba2Config(raw5);
  assert.equal(v5.dims.maxPositionEmbeddings, 16384);
  assert.equal(v5.dims.ropeTheta, 10000);
  assert.equal(parseZamba2Config(v4Config({ use_long_context: true, use_mem_rope: false })).dims.ropeTheta, 10000);
  assert.equal(parseZamba2Config(v4Config({ use_long_context: true }), { longContextRopeRescale: 'never' }).dims.ropeTheta, 10000);
});

test('dims round-trip through the hub config writer', () => {
  const { dims } = parseZamba2Config(v4Config({ num_mem_blocks: 3, use_conv_bias: false, torch_dtype: 'float16' }));
  const again = parseZamba2Config(dimsToHubConfig(dims));
  assert.deepEqual(again.dims, dims);
  const long = parseZamba2Config(v4Config({ use_long_context: true }));
  assert.deepEqual(parseZamba2Config(dimsToHubConfig(long.dims, { useLongContext: true, storedRopeTheta: long.storedRopeTheta })).dims, long.dims);
});

test('bad configs give one line naming the field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [v4Config({ hidden_size: '64' }), /field "hidden_size": .*expected number/],
    [v4Config({ layers_block_type: ['mamba', 'attn'] }), /field "layers_block_type\.1": unknown layer type "attn"/],
    [v4Config({ num_hidden_layers: 7 }), /field "num_hidden_layers": 7 but layers_block_type lists 6/],
    [v4Config({ num_attention_heads: 5 }), /field "num_attention_heads": 5 does not divide/],
    [v4Config({ n_mamba_heads: 7 }), /field "n_mamba_heads"/],
    [v4Config({ mamba_ngroups: 3 }), /field "mamba_ngroups"/],
    [v4Config({ torch_dtype: 'int8' }), /field "dtype": unsupported dtype "int8"/],
    [v4Config({ attention_head_dim: 64 }), /field "attention_head_dim": 64, expected 32/],
    [v4Config({ num_key_value_heads: 2 }), /field "num_key_value_heads"/],
    [v4Config({ layers_block_type: ['mamba', 'mamba'], num_hidden_layers: 2 }), /no hybrid layer/],
    [v4Config({ hybrid_layer_ids: [1, 3] }), /field "hybrid_layer_ids"/],
    [v4Config({ state_size: 8 }), /fields "state_size" and "mamba_d_state" disagree/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => parseZamba2Config(raw, { source: 'x/config.json' }), (err: Error) => {
      assert.match(err.message, re);
      assert.match(err.message, /^x\/config\.json: /);
      assert.equal(err.message.includes('\n'), false);
      return true;
    });
  }
  assert.throws(() => parseZamba2ConfigText('{"hidden_size": 64,', { source: 'c.json' }), /^Zamba2ConfigError: c\.json: invalid JSON|c\.json: invalid JSON/);
});

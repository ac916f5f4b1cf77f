import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listPresetNames, loadPreset } from '../../../src/model/presets.js';
import { kvBytesPerPage, kvBytesPerToken, kvElementsPerToken, parameterCount, sequenceStateSize } from '../../../src/model/memory.js';

// Numbers typed in from ../shared/zamba2-spec.md §1.2 and §3.4, not computed by the code under test.
const FAMILIES = {
  '1.2b': {
    H: 2048, layers: 38, hybrid: [5, 11, 17, 23, 29, 35], blocks: 1, ahd: 128, kvc: 64, F: 8192, dInner: 4096, P: 64, nh: 64, N: 128, G: 1,
    convDim: 4352, inProj: 8512, rope: true, attnAdapter: true, paramsB: 1.2151,
    ssmElems: 19_922_944, ssmBytes32: 79_691_776, ssmBytes16: 39_845_888, convElems: 496_128, convBytes32: 1_984_512, convBytes16: 992_256,
    total32: 81_676_288, total16: 40_838_144, kvElems: 49_152, kvBytes16: 98_304, kvBytes32: 196_608, kv4096MiB: 384,
  },
  '2.7b': {
    H: 2560, layers: 54, hybrid: [6, 12, 18, 24, 30, 36, 42, 47, 51], blocks: 2, ahd: 160, kvc: 80, F: 10240, dInner: 5120, P: 64, nh: 80, N: 64, G: 1,
    convDim: 5248, inProj: 10448, rope: false, attnAdapter: false, paramsB: 2.6622,
    ssmElems: 17_694_720, ssmBytes32: 70_778_880, ssmBytes16: 35_389_440, convElems: 850_176, convBytes32: 3_400_704, convBytes16: 1_700_352,
    total32: 74_179_584, total16: 37_089_792, kvElems: 92_160, kvBytes16: 184_320, kvBytes32: 368_640, kv4096MiB: 720,
  },
  '7b': {
    H: 3584, layers: 81, hybrid: [6, 11, 17, 23, 29, 35, 41, 47, 53, 59, 65, 71, 77], blocks: 2, ahd: 224, kvc: 112, F: 14336, dInner: 7168, P: 64, nh: 112, N: 64, G: 2,
    convDim: 7424, inProj: 14704, rope: true, attnAdapter: false, paramsB: 7.3567,
    ssmElems: 37_158_912, ssmBytes32: 148_635_648, ssmBytes16: 74_317_824, convElems: 1_804_032, convBytes32: 7_216_128, convBytes16: 3_608_064,
    total32: 155_851_776, total16: 77_925_888, kvElems: 186_368, kvBytes16: 372_736, kvBytes32: 745_472, kv4096MiB: 1456,
  },
} as const;

test('six presets exist', () => {
  assert.deepEqual(listPresetNames(), ['zamba2-1.2b', 'zamba2-1.2b-instruct', 'zamba2-2.7b', 'zamba2-2.7b-instruct', 'zamba2-7b', 'zamba2-7b-instruct']);
});

for (const [size, f] of Object.entries(FAMILIES)) {
  for (const suffix of ['', '-instruct']) {
    const name = `zamba2-${size}${suffix}`;
    test(`${name}: dims, state and KV bytes match the spec tables`, () => {
      const { dims, format } = loadPreset(name);
      assert.equal(format, 'hf-v4');
      assert.equal(dims.hiddenSize, f.H);
      assert.equal(dims.numLayers, f.layers);
      assert.deepEqual(dims.hybridLayerIds, f.hybrid);
      assert.equal(dims.numMemBlocks, f.blocks);
      assert.deepEqual(dims.hybridBlockIds, f.hybrid.map((_, h) => h % f.blocks));
      assert.equal(dims.attentionHeadDim, f.ahd);
      assert.equal(dims.kvChannels, f.kvc);
      assert.equal(dims.intermediateSize, f.F);
      assert.equal(dims.dInner, f.dInner);
      assert.equal(dims.mambaHeadDim, f.P);
      assert.equal(dims.nMambaHeads, f.nh);
      assert.equal(dims.mambaDState, f.N);
      assert.equal(dims.mambaNGroups, f.G);
      assert.equal(dims.convDim, f.convDim);
      assert.equal(dims.inProjOut, f.inProj);
      assert.equal(dims.useMemRope, f.rope);
      assert.equal(dims.useSharedAttentionAdapter, f.attnAdapter);
      assert.equal(dims.vocabSize, 32000);
      assert.equal(Math.round(parameterCount(dims) / 1e5) / 1e4, f.paramsB);
      const s32 = sequenceStateSize(dims, 'float32');
      const s16 = sequenceStateSize(dims, 'bfloat16');
      assert.equal(s32.ssmElements, f.ssmElems);
      assert.equal(s32.convElements, f.convElems);
      assert.deepEqual([s32.ssmBytes, s32.convBytes, s32.totalBytes], [f.ssmBytes32, f.convBytes32, f.total32]);
      assert.deepEqual([s16.ssmBytes, s16.convBytes, s16.totalBytes], [f.ssmBytes16, f.convBytes16, f.total16]);
      assert.equal(kvElementsPerToken(dims), f.kvElems);
      assert.equal(kvBytesPerToken(dims, 'bfloat16'), f.kvBytes16);
      assert.equal(kvBytesPerToken(dims, 'float32'), f.kvBytes32);
      assert.equal(kvBytesPerPage(dims, 'bfloat16'), 16 * f.kvBytes16);
      assert.equal((4096 * kvBytesPerToken(dims, 'bfloat16')) / 2 ** 20, f.kv4096MiB);
    });
  }
}

test('checkpoint dtypes and long context per preset', () => {
  assert.equal(loadPreset('zamba2-1.2b').dims.dtype, 'bfloat16');
  assert.equal(loadPreset('zamba2-1.2b-instruct').dims.dtype, 'float32');
  assert.equal(loadPreset('zamba2-7b').dims.maxPositionEmbeddings, 4096);
  const long = loadPreset('zamba2-7b-instruct');
  assert.equal(long.useLongContext, true);
  assert.equal(long.dims.maxPositionEmbeddings, 16384);
  assert.ok(Math.abs(long.dims.ropeTheta - 81_513) < 1, `theta ${long.dims.ropeTheta}`); // spec §6.3: ≈81,520
  // 5.69 GiB of bf16 KV at 16k tokens (spec §3.4)
  assert.equal(Math.round((16384 * kvBytesPerToken(long.dims, 'bfloat16')) / 2 ** 30 * 100) / 100, 5.69);
  assert.throws(() => loadPreset('zamba2-13b'), /unknown preset "zamba2-13b"/);
});

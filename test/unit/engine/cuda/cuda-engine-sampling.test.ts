// The CUDA engine's GPU-sampling plumbing over a fake addon (no GPU): which rows go to the GPU
// sampler, the seen-token counts it is handed (prompt vs output, this step's tokens included, kept
// across steps and copied with copySlot), how its outputs become SequenceOutputs, and the
// ZAMBA2_HOST_SAMPLING path that copies logits back instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CudaEngine } from '../../../../src/engine/cuda/cuda-engine.js';
import type { NativeEngineHandle, NativeStepOutput, Zamba2CudaAddon } from '../../../../src/engine/cuda/binding.js';
import { SAMPLE_BIAS_WORDS, SAMPLE_HEADER_WORDS, SAMPLE_MAX_TOP, SAMPLE_PARAM_WORDS, SAMPLE_PENALTY_WORDS } from '../../../../src/engine/cuda/step-packing.js';
import { GREEDY, type EngineDescription, type SamplingParams, type ScheduledSequence } from '../../../../src/engine/engine.js';
import type { Zamba2Dims } from '../../../../src/model/types.js';

const V = 50;

/** Records every step's inputs; the GPU "draws" token 40 + row with logprob -0.5 - row and top ids [3, 4]. */
function fakeAddon() {
  const calls: { packed: Int32Array; sampling: Int32Array | null }[] = [];
  const addon = {
    step: async (_h: NativeEngineHandle, packed: Int32Array, sampling?: Int32Array | null): Promise<NativeStepOutput> => {
      calls.push({ packed: packed.slice(), sampling: sampling ? sampling.slice() : null });
      const O = packed[2]!;
      const N = sampling ? sampling[0]! : 0;
      const topIds = new Int32Array(N * SAMPLE_MAX_TOP).fill(-1);
      const topLogprobs = new Float32Array(N * SAMPLE_MAX_TOP).fill(-Infinity);
      for (let r = 0; r < N; r++) topIds.set([3, 4], r * SAMPLE_MAX_TOP), topLogprobs.set([-0.25, -1.5], r * SAMPLE_MAX_TOP);
      const logits = packed[4] === 1 ? new Float32Array(O * V).map((_, i) => (i % V === 7 ? 5 : 0)) : null;
      return {
        argmax: new Int32Array(O).fill(1),
        maxLogit: new Float32Array(O),
        lse: new Float32Array(O).fill(1),
        logits,
        sampledToken: Int32Array.from({ length: N }, (_, r) => 40 + r),
        sampledLogprob: Float32Array.from({ length: N }, (_, r) => -0.5 - r),
        topIds,
        topLogprobs,
        computeMs: 1,
      };
    },
    initCache: () => undefined,
    copySlot: () => undefined,
    destroy: () => undefined,
  } as unknown as Zamba2CudaAddon;
  return { addon, calls };
}

const description: EngineDescription = {
  kind: 'cuda', modelId: 'fake', dtype: 'bfloat16', vocabSize: V, maxModelLen: 256, mambaLayerCount: 1, attentionLayerCount: 0,
  stateSlotBytes: 1, kvPageBytes: 1, tokensPerPage: 16, maxTokensPerStep: 64, maxSequencesPerStep: 8, cacheBudgetBytes: 1e9, eosTokenIds: [0],
};
const dims = { vocabSize: V, hybridLayerIds: [] } as unknown as Zamba2Dims;

async function makeEngine(hostSampling: boolean) {
  const { addon, calls } = fakeAddon();
  const engine = new CudaEngine(addon, {} as NativeEngineHandle, dims, description, 0, hostSampling);
  await engine.initCache({ slotCount: 4, pageCount: 4 });
  return { engine, calls };
}

let stepId = 0;
const step = (sequences: ScheduledSequence[], reset: number[] = []) => ({ stepId: stepId++, sequences, resetSlots: Int32Array.from(reset), releasedSeqIds: [] });
const seq = (slot: number, start: number, tokens: number[], sampling: SamplingParams, promptLength = 3): ScheduledSequence => ({
  seqId: slot, slot, pageTable: new Int32Array(0), startPosition: start, tokens: Int32Array.from(tokens), promptLength, sample: true, sampling, promptLogprobs: null,
});

/** Penalty entries of GPU sampling row r as a sorted [token, outputCount] list. */
function penaltiesOf(words: Int32Array, r: number): number[][] {
  const N = words[0]!, B = words[2]!;
  const at = SAMPLE_HEADER_WORDS + r * SAMPLE_PARAM_WORDS;
  const start = words[at + 18]!, count = words[at + 19]!;
  const penAt = SAMPLE_HEADER_WORDS + N * SAMPLE_PARAM_WORDS + B * SAMPLE_BIAS_WORDS;
  const out: number[][] = [];
  for (let k = 0; k < count; k++) out.push([words[penAt + (start + k) * SAMPLE_PENALTY_WORDS]!, words[penAt + (start + k) * SAMPLE_PENALTY_WORDS + 1]!]);
  return out.sort((a, b) => a[0]! - b[0]!);
}

const penalized: SamplingParams = { ...GREEDY, temperature: 0.8, repetitionPenalty: 1.3, frequencyPenalty: 0.5, logprobs: 2 };

test('sampled rows go to the GPU with seen-token counts that include this step and grow step by step', async () => {
  const { engine, calls } = await makeEngine(false);
  // plain greedy (slot 0) keeps the GPU argmax; the penalized sequence (slot 1) is GPU sampling row 0
  const r1 = await engine.step(step([seq(0, 0, [9, 9, 9], GREEDY), seq(1, 0, [5, 6, 5], penalized)], [0, 1]));
  assert.equal(calls[0]!.packed[4], 0, 'no logits rows come back');
  assert.equal(calls[0]!.sampling![0], 1);
  assert.deepEqual(penaltiesOf(calls[0]!.sampling!, 0), [[5, 0], [6, 0]]); // prompt tokens: seen, no output count
  assert.equal(r1.outputs[0]!.token, 1);
  assert.equal(r1.outputs[1]!.token, 40);
  assert.deepEqual(r1.outputs[1]!.logprobs, { tokenId: 40, logprob: -0.5, top: { tokenIds: Int32Array.from([3, 4]), logprobs: Float32Array.from([-0.25, -1.5]) } });

  await engine.step(step([seq(1, 3, [5], penalized)]));
  assert.deepEqual(penaltiesOf(calls[1]!.sampling!, 0), [[5, 1], [6, 0]]); // position 3 is output
  await engine.copySlot(1, 2);
  await engine.step(step([seq(1, 4, [6], penalized), seq(2, 4, [7], penalized)]));
  assert.deepEqual(penaltiesOf(calls[2]!.sampling!, 0), [[5, 1], [6, 1]]);
  assert.deepEqual(penaltiesOf(calls[2]!.sampling!, 1), [[5, 1], [6, 0], [7, 1]]); // the copy diverges on its own
});

test('a sequence without penalties sends none; logprobs null gives no logprobs; 1 top logprob lists one', async () => {
  const { engine, calls } = await makeEngine(false);
  const r = await engine.step(step([seq(0, 0, [5, 6], { ...GREEDY, temperature: 1 }), seq(1, 0, [5], { ...GREEDY, temperature: 1, logprobs: 1 })], [0, 1]));
  assert.deepEqual(penaltiesOf(calls[0]!.sampling!, 0), []);
  assert.equal(r.outputs[0]!.logprobs, null);
  assert.deepEqual(Array.from(r.outputs[1]!.logprobs!.top!.tokenIds), [3]);
  assert.equal(r.outputs[1]!.token, 41);
});

test('ZAMBA2_HOST_SAMPLING path: logits rows come back and the host sampler draws', async () => {
  const { engine, calls } = await makeEngine(true);
  const r = await engine.step(step([seq(0, 0, [5, 6, 5], { ...penalized, topK: 1 })], [0]));
  assert.equal(calls[0]!.sampling, null);
  assert.equal(calls[0]!.packed[4], 1);
  assert.equal(r.outputs[0]!.token, 7); // the fake row's only large logit, top-k 1
  assert.equal(r.outputs[0]!.logprobs!.top!.tokenIds[0], 7);
});

// The CUDA engine's step packing (pure TS): layout, page indices, output rows, logits requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GREEDY, type ScheduledSequence, type StepPlan } from '../../../../src/engine/engine.js';
import {
  isGpuGreedy,
  packSampling,
  packStep,
  PACK_HEADER,
  SAMPLE_BIAS_WORDS,
  SAMPLE_HEADER_WORDS,
  SAMPLE_PARAM_WORDS,
  SAMPLE_PENALTY_WORDS,
  seedWords,
} from '../../../../src/engine/cuda/step-packing.js';
import { uniformAt } from '../../../../src/engine/cpu/sampler.js';

function seq(seqId: number, slot: number, start: number, tokens: number[], extra: Partial<ScheduledSequence> = {}): ScheduledSequence {
  return {
    seqId,
    slot,
    pageTable: Int32Array.from([7, 3, 9, 1]),
    startPosition: start,
    tokens: Int32Array.from(tokens),
    promptLength: 20,
    sample: true,
    sampling: GREEDY,
    promptLogprobs: null,
    ...extra,
  };
}

const plan = (sequences: ScheduledSequence[], reset: number[] = []): StepPlan => ({ stepId: 1, sequences, resetSlots: Int32Array.from(reset), releasedSeqIds: [] });

test('packs tokens, positions, kv indices, block tables and output rows in the documented order', () => {
  const p = packStep(plan([seq(10, 4, 30, [5]), seq(11, 2, 0, [1, 2, 3], { sample: false })], [2]), true);
  const a = Array.from(p.packed);
  const [S, T, O, R, want, W] = a;
  assert.deepEqual([S, T, O, R, want, W], [2, 4, 1, 1, 0, 2]);
  let at = PACK_HEADER;
  const take = (n: number) => a.slice(at, (at += n));
  assert.deepEqual(take(T!), [5, 1, 2, 3]); // tokens
  assert.deepEqual(take(T!), [30, 0, 1, 2]); // positions
  assert.deepEqual(take(T!), [0, 1, 1, 1]); // token -> sequence
  assert.deepEqual(take(T!), [3 * 16 + 14, 7 * 16, 7 * 16 + 1, 7 * 16 + 2]); // page * 16 + offset
  assert.deepEqual(take(S! + 1), [0, 1, 4]); // cu_seqlens
  assert.deepEqual(take(S!), [4, 2]); // slots
  assert.deepEqual(take(S! * W!), [7, 3, 7, -1]); // block tables, padded
  assert.deepEqual(take(O!), [0]); // only the sampled sequence's last token
  assert.deepEqual(take(R!), [2]);
  assert.equal(at, a.length);
  assert.deepEqual(Array.from(p.rowStart), [0, 1]);
  assert.deepEqual(Array.from(p.rowCount), [1, 0]);
});

test('prompt logprobs and returned logits ask for every row of the chunk; sampled rows only with host sampling', () => {
  const p = packStep(plan([seq(1, 0, 0, [4, 5, 6], { promptLogprobs: 1 }), seq(2, 1, 0, [8])]), true);
  assert.equal(p.wantLogits, true);
  assert.deepEqual(Array.from(p.rowCount), [3, 1]);
  const sampled = plan([seq(2, 1, 0, [8], { sampling: { ...GREEDY, temperature: 0.7 } })]);
  assert.equal(packStep(sampled, true).wantLogits, false); // drawn on the GPU
  assert.equal(packStep(sampled, true, true).wantLogits, true); // ZAMBA2_HOST_SAMPLING=1
  assert.equal(packStep(plan([seq(2, 1, 0, [8])]), true).wantLogits, false);
});

test('greedy stays on the GPU only without penalties, bias or top logprobs', () => {
  assert.equal(isGpuGreedy(GREEDY), true);
  assert.equal(isGpuGreedy({ ...GREEDY, logprobs: 0 }), true);
  assert.equal(isGpuGreedy({ ...GREEDY, logprobs: 2 }), false);
  assert.equal(isGpuGreedy({ ...GREEDY, repetitionPenalty: 1.1 }), false);
  assert.equal(isGpuGreedy({ ...GREEDY, logitBias: new Map([[3, 1]]) }), false);
});

test('a page table too short for the chunk is rejected; models without attention need none', () => {
  assert.throws(() => packStep(plan([seq(1, 0, 60, [1, 2, 3, 4, 5])]), true), /page table covers 64 positions, needs 65/);
  const p = packStep(plan([seq(1, 0, 60, [1, 2, 3, 4, 5], { pageTable: new Int32Array(0) })]), false);
  assert.equal(p.packed[5], 1);
});

/** Decodes packSampling's words (layout: step-packing.ts / zamba2-kernels.h zk_sample_params). */
function decodeSampling(words: Int32Array) {
  const f64 = new Float64Array(words.buffer, words.byteOffset, words.length / 2);
  const [N, P, B] = [words[0]!, words[1]!, words[2]!];
  assert.equal(words.length, SAMPLE_HEADER_WORDS + N * SAMPLE_PARAM_WORDS + B * SAMPLE_BIAS_WORDS + P * SAMPLE_PENALTY_WORDS);
  const biasAt = SAMPLE_HEADER_WORDS + N * SAMPLE_PARAM_WORDS;
  const penAt = biasAt + B * SAMPLE_BIAS_WORDS;
  return Array.from({ length: N }, (_, r) => {
    const at = SAMPLE_HEADER_WORDS + r * SAMPLE_PARAM_WORDS;
    const ints = Array.from(words.subarray(at + 12, at + 24));
    const [logitsRow, topK, seedLo, seedHi, position, nTop, penStart, penCount, biasStart, biasCount] = ints;
    return {
      doubles: Array.from(f64.subarray(at / 2, at / 2 + 6)),
      logitsRow, topK, seedLo: seedLo! >>> 0, seedHi: seedHi! >>> 0, position, nTop,
      bias: Array.from({ length: biasCount! }, (_, k) => {
        const w = biasAt + (biasStart! + k) * SAMPLE_BIAS_WORDS;
        return [words[w]!, f64[(w + 2) / 2]!];
      }),
      penalties: Array.from({ length: penCount! }, (_, k) => {
        const w = penAt + (penStart! + k) * SAMPLE_PENALTY_WORDS;
        return [words[w]!, words[w + 1]!];
      }),
    };
  });
}

test('packSampling: one row per sampled non-greedy sequence, float64 params, seeds, bias and penalties', () => {
  const hot = { ...GREEDY, temperature: 0.7, topP: 0.9, topK: 40, minP: 0.05, seed: 2 ** 40 + 17, logprobs: 5, logitBias: new Map([[3, -1.5], [9, 100]]) };
  const pen = { ...GREEDY, temperature: 1.3, repetitionPenalty: 1.2, presencePenalty: 0.5, frequencyPenalty: 0.25 };
  const pl = plan([
    seq(10, 0, 5, [1, 2, 3], { sampling: hot, promptLogprobs: 1 }), // every row of the chunk comes back: rows 0..2
    seq(11, 1, 0, [4], { sampling: GREEDY }), // plain greedy: GPU argmax, no sampling row
    seq(12, 2, 0, [5, 6], { sampling: pen, sample: false }), // not sampled this step
    seq(13, 3, 30, [7], { sampling: pen }),
  ]);
  const step = packStep(pl, true);
  const seen = new Map([[7, 2], [8, 0]]);
  const calls: number[] = [];
  const s = packSampling(pl, step, { engineSeed: 5, seen: (i) => (calls.push(i), seen) });
  assert.deepEqual(calls, [3]); // only the sequence with penalties
  assert.deepEqual(Array.from(s.rowOfSequence), [0, -1, -1, 1]);
  const rows = decodeSampling(s.words);
  assert.equal(rows.length, 2);
  const [a, b] = rows;
  assert.deepEqual(a!.doubles, [0.7, 0.9, 0.05, 0, 0, 1]);
  assert.equal(a!.logitsRow, 2); // the chunk's last row
  assert.equal(a!.topK, 40);
  assert.equal(a!.position, 8);
  assert.equal(a!.nTop, 5);
  assert.deepEqual([a!.seedLo, a!.seedHi], [17, 256]);
  assert.deepEqual(a!.bias, [[3, -1.5], [9, 100]]);
  assert.deepEqual(a!.penalties, []);
  assert.deepEqual(b!.doubles, [1.3, 1, 0, 0.5, 0.25, 1.2]);
  assert.equal(b!.logitsRow, step.rowStart[3]);
  assert.equal(b!.position, 31);
  assert.equal(b!.nTop, 0);
  assert.deepEqual([b!.seedLo, b!.seedHi], seedWords(5 * 1_000_003 + 13)); // the engine's stream, per sequence
  assert.deepEqual(b!.penalties, [[7, 2], [8, 0]]);
});

test('packSampling: nothing to sample gives an empty input; more than 20 top logprobs is refused', () => {
  const pl = plan([seq(1, 0, 0, [4]), seq(2, 1, 0, [5], { sampling: { ...GREEDY, logprobs: 0 } })]);
  const s = packSampling(pl, packStep(pl, true), { engineSeed: 0, seen: () => new Map() });
  assert.equal(s.words.length, 0);
  assert.deepEqual(Array.from(s.rowOfSequence), [-1, -1]);
  const bad = plan([seq(1, 0, 0, [4], { sampling: { ...GREEDY, temperature: 1, logprobs: 21 } })]);
  assert.throws(() => packSampling(bad, packStep(bad, true), { engineSeed: 0, seen: () => new Map() }), /logprobs 21 outside 0..20/);
});

test('seedWords splits a key the way uniformAt does (the GPU recomputes uniformAt from the two words)', () => {
  for (const key of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
    const [lo, hi] = seedWords(key);
    assert.equal(lo + hi * 2 ** 32, key % 2 ** 64);
    // a key rebuilt from the words draws the same number
    assert.equal(uniformAt(lo + hi * 2 ** 32, 7), uniformAt(key, 7));
  }
});

test('uniformAt matches the GPU sampler port (kernels/tests/test-sampling.cu ref_uniform) bit for bit', () => {
  // [seedLo, seedHi, position, value printed by the C++ port with %.17g]
  const cases: [number, number, number, number][] = [
    [0, 0, 0, 0.24498620013509387],
    [1234, 0, 17, 0.67083665710217011],
    [4294967295, 0, 4095, 0.26281437642102567],
    [17, 256, 8, 0.72216377978225355],
    [2309737967, 4660, 100000, 0.017670715077047427],
  ];
  for (const [lo, hi, pos, want] of cases) assert.equal(uniformAt(lo + hi * 2 ** 32, pos), want);
});

// The CUDA engine's step packing (pure TS): layout, page indices, output rows, logits requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GREEDY, type ScheduledSequence, type StepPlan } from '../../../../src/engine/engine.js';
import { isGpuGreedy, packStep, PACK_HEADER } from '../../../../src/engine/cuda/step-packing.js';

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

test('prompt logprobs and returned logits ask for every row of the chunk, sampling for host logits', () => {
  const p = packStep(plan([seq(1, 0, 0, [4, 5, 6], { promptLogprobs: 1 }), seq(2, 1, 0, [8])]), true);
  assert.equal(p.wantLogits, true);
  assert.deepEqual(Array.from(p.rowCount), [3, 1]);
  const q = packStep(plan([seq(2, 1, 0, [8], { sampling: { ...GREEDY, temperature: 0.7 } })]), true);
  assert.equal(q.wantLogits, true);
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

// The CPU sampler: masks, penalties, bias, seeded draws and logprob helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  candidateDistribution,
  logSoftmax,
  processLogits,
  sampleFromLogits,
  topIndices,
  uniformAt,
} from '../../../../src/engine/cpu/sampler.js';
import { GREEDY, type SamplingParams } from '../../../../src/engine/engine.js';

const params = (p: Partial<SamplingParams>): SamplingParams => ({ ...GREEDY, ...p });
const noHistory = { tokens: [], promptLength: 0 };
// probabilities at temperature 1: proportional to 8, 4, 2, 1, 1 (ids 0..4)
const logits = Float32Array.from([8, 4, 2, 1, 1].map(Math.log));

test('greedy picks the argmax, logit_bias can move it', () => {
  assert.equal(sampleFromLogits(logits, GREEDY, noHistory, 0.99), 0);
  assert.equal(sampleFromLogits(logits, params({ logitBias: new Map([[3, 5]]) }), noHistory, 0.5), 3);
});

test('top-k, top-p and min-p keep the expected candidates', () => {
  const ids = (p: Partial<SamplingParams>) => Array.from(candidateDistribution(logits, params({ temperature: 1, ...p })).ids);
  assert.deepEqual(ids({ topK: 2 }), [0, 1]);
  // top-p 0.75 of total 16: 8 (0.5) then 4 (0.75) reaches it
  assert.deepEqual(ids({ topP: 0.75 }), [0, 1]);
  assert.deepEqual(ids({ topP: 0.76 }), [0, 1, 2]);
  // min-p: keep p ≥ minP·p_max; ratios to the max are 1, 0.5, 0.25, 0.125, 0.125
  assert.deepEqual(ids({ minP: 0.24 }), [0, 1, 2]);
  assert.deepEqual(ids({ minP: 0.3 }), [0, 1]);
  assert.deepEqual(ids({}), [0, 1, 2, 3, 4]);
  assert.deepEqual(ids({ topK: 3, topP: 0.99 }), [0, 1, 2]);
  // ids come back in token order, whatever their probabilities
  const shuffled = Float32Array.from([1, 8, 2, 4].map(Math.log));
  assert.deepEqual(Array.from(candidateDistribution(shuffled, params({ temperature: 1, topK: 2 })).ids), [1, 3]);
});

test('sampling follows the distribution: the draw u lands in cumulative buckets', () => {
  const p = params({ temperature: 1 });
  // cumulative: 0.5, 0.75, 0.875, 0.9375, 1
  assert.equal(sampleFromLogits(logits, p, noHistory, 0.49), 0);
  assert.equal(sampleFromLogits(logits, p, noHistory, 0.51), 1);
  assert.equal(sampleFromLogits(logits, p, noHistory, 0.8), 2);
  assert.equal(sampleFromLogits(logits, p, noHistory, 0.9), 3);
  assert.equal(sampleFromLogits(logits, p, noHistory, 0.99), 4);
  // low temperature sharpens: at T=0.1 token 0 dominates any draw below ~0.999
  assert.equal(sampleFromLogits(logits, params({ temperature: 0.1 }), noHistory, 0.99), 0);
});

test('presence/frequency penalties count output tokens only; repetition penalty covers prompt and output', () => {
  const base = Float32Array.from([2, 2, -2, 1]);
  // prompt [0], output [1, 1, 3]
  const history = { tokens: [0, 1, 1, 3], promptLength: 1 };
  const pf = processLogits(base, params({ presencePenalty: 0.5, frequencyPenalty: 0.25 }), history);
  assert.deepEqual(Array.from(pf), [2, 2 - 0.5 - 0.5, -2, 1 - 0.5 - 0.25]);
  const rep = processLogits(base, params({ repetitionPenalty: 2 }), { tokens: [0, 2], promptLength: 1 });
  assert.deepEqual(Array.from(rep), [1, 2, -4, 1]);
  assert.deepEqual(Array.from(base), [2, 2, -2, 1], 'input row untouched');
});

test('uniformAt is reproducible, in [0,1), and differs across seeds and positions', () => {
  assert.equal(uniformAt(7, 100), uniformAt(7, 100));
  assert.notEqual(uniformAt(7, 100), uniformAt(8, 100));
  assert.notEqual(uniformAt(7, 100), uniformAt(7, 101));
  let sum = 0;
  for (let i = 0; i < 2000; i++) {
    const u = uniformAt(12345, i);
    assert.ok(u >= 0 && u < 1);
    sum += u;
  }
  assert.ok(Math.abs(sum / 2000 - 0.5) < 0.03, `mean ${sum / 2000}`);
});

test('logSoftmax and topIndices', () => {
  const lp = logSoftmax(logits);
  assert.ok(Math.abs(lp[0]! - Math.log(0.5)) < 1e-6);
  assert.ok(Math.abs(lp[4]! - Math.log(1 / 16)) < 1e-6);
  assert.deepEqual(Array.from(topIndices(Float32Array.from([0.1, 3, 2, 3, -1]), 3)), [1, 3, 2]);
});

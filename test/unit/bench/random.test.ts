import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arrivalOffsetsMs, createRandom, sampleGamma } from '../../../src/bench/random.js';

test('the same seed gives the same stream, another seed another', () => {
  const a = createRandom(42);
  const b = createRandom(42);
  const c = createRandom(43);
  const sa = Array.from({ length: 5 }, a);
  assert.deepEqual(sa, Array.from({ length: 5 }, b));
  assert.notDeepEqual(sa, Array.from({ length: 5 }, c));
  for (const v of sa) assert.ok(v >= 0 && v < 1);
});

function meanAndCv(values: number[]): { mean: number; cv: number } {
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
  return { mean, cv: Math.sqrt(variance) / mean };
}

test('gamma samples have mean shape·scale and CV 1/sqrt(shape)', () => {
  for (const shape of [0.5, 1, 4]) {
    const random = createRandom(7);
    const samples = Array.from({ length: 20000 }, () => sampleGamma(random, shape, 2));
    const { mean, cv } = meanAndCv(samples);
    assert.ok(Math.abs(mean - shape * 2) / (shape * 2) < 0.05, `shape ${shape}: mean ${mean}`);
    assert.ok(Math.abs(cv - 1 / Math.sqrt(shape)) < 0.05, `shape ${shape}: cv ${cv}`);
    assert.ok(samples.every((v) => v > 0));
  }
  assert.throws(() => sampleGamma(createRandom(1), 0, 1), RangeError);
});

test('arrivals average 1/rate apart, burstiness changes their spread, inf sends at once', () => {
  const offsets = arrivalOffsetsMs(5000, 20, 1, createRandom(3));
  assert.equal(offsets[0], 0);
  const gaps = offsets.slice(1).map((t, i) => t - (offsets[i] ?? 0));
  const poisson = meanAndCv(gaps);
  assert.ok(Math.abs(poisson.mean - 50) < 2.5, `mean gap ${poisson.mean} ms`);
  assert.ok(Math.abs(poisson.cv - 1) < 0.05);
  const bursty = arrivalOffsetsMs(5000, 20, 0.25, createRandom(3));
  const burstyGaps = meanAndCv(bursty.slice(1).map((t, i) => t - (bursty[i] ?? 0)));
  assert.ok(Math.abs(burstyGaps.mean - 50) < 5);
  assert.ok(burstyGaps.cv > 1.8, `cv ${burstyGaps.cv}`);
  assert.deepEqual(arrivalOffsetsMs(3, Infinity, 1, createRandom(0)), [0, 0, 0]);
  assert.deepEqual(arrivalOffsetsMs(10, 5, 1, createRandom(9)), arrivalOffsetsMs(10, 5, 1, createRandom(9)));
});

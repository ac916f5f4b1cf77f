import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GREEDY } from '../../../src/engine/engine.js';
import { completionSampling } from '../../../src/scheduler/step-plan.js';

test('n > 1 with a seed: each completion gets its own reproducible seed; completion 0 keeps the request seed', () => {
  const seeded = { ...GREEDY, temperature: 1, seed: 42 };
  assert.equal(completionSampling(seeded, 0), seeded);
  const seeds = [1, 2, 3].map((i) => completionSampling(seeded, i).seed);
  assert.equal(new Set([42, ...seeds]).size, 4);
  assert.deepEqual([1, 2, 3].map((i) => completionSampling(seeded, i).seed), seeds);
  for (const s of seeds) assert.ok(Number.isInteger(s) && s! >= 0 && s! < 2 ** 32);
  const unseeded = { ...GREEDY, temperature: 1 };
  assert.equal(completionSampling(unseeded, 2), unseeded);
});

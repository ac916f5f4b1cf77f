import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertLogitsClose, compareLogits, listGoldenFixtures, loadGoldenFixture } from '../../helpers/golden.js';

test('compareLogits reports the worst row and index', () => {
  const expected = Float32Array.from([1, 2, 3, 10, 20, 30]);
  const actual = Float32Array.from([1, 2, 3, 10, 20.5, 30]);
  const cmp = compareLogits(actual, expected, 3);
  assert.equal(cmp.rows, 2);
  assert.equal(cmp.worstRow, 1);
  assert.equal(cmp.worstIndex, 1);
  assert.equal(cmp.maxAbsError, 0.5);
  assert.ok(Math.abs(cmp.maxRelError - 0.5 / 30) < 1e-12);
});

test('assertLogitsClose passes within the bound and names position, token and values beyond it', () => {
  const expected = Float32Array.from([1, 2, 3, 10, 20, 30]);
  const close = Float32Array.from([1, 2, 3.001, 10, 20, 30]);
  assert.ok(assertLogitsClose(close, expected, { maxRelError: 1e-3, vocabSize: 3 }).maxRelError < 1e-3);
  const far = Float32Array.from([1, 2, 3, 10, 25, 30]);
  assert.throws(
    () => assertLogitsClose(far, expected, { maxRelError: 1e-3, vocabSize: 3, label: 'case x', positions: [7, 42] }),
    (err: Error) => /case x/.test(err.message) && /position 42/.test(err.message) && /token 1/.test(err.message) && /actual 25 vs expected 20/.test(err.message),
  );
});

test('assertLogitsClose fails on NaN and on length mismatch', () => {
  const expected = Float32Array.from([1, 2]);
  assert.throws(() => assertLogitsClose(Float32Array.from([1, NaN]), expected, { maxRelError: 1 }), /max rel error/);
  assert.throws(() => assertLogitsClose(Float32Array.from([1]), expected, { maxRelError: 1 }), /length/);
});

test('loadGoldenFixture rejects a logits file of the wrong size', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'golden-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'x'));
  const json = {
    format: 'zamba2-golden/1', fixture: 'x', description: '', checkpoint: '.', generator: {}, crossCheck: { status: 'ok' },
    dims: { vocabSize: 4, hiddenSize: 2, numLayers: 1 },
    cases: [{ name: 'c', promptTokens: [1, 2], logitPositions: [0, 1], logitsFile: 'l.f32', greedyTokens: [], greedyTop2Margins: [] }],
  };
  writeFileSync(join(dir, 'x', 'golden.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'x', 'l.f32'), Buffer.alloc(4 * 4 * 2 - 4));
  assert.deepEqual(listGoldenFixtures(dir), ['x']);
  assert.throws(() => loadGoldenFixture('x', dir), /28 bytes, expected 2 positions × 4 × 4 = 32/);
  writeFileSync(join(dir, 'x', 'l.f32'), Buffer.from(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]).buffer));
  const fx = loadGoldenFixture('x', dir);
  assert.deepEqual([...fx.logitsAt('c', 1)], [4, 5, 6, 7]);
  assert.throws(() => fx.logitsAt('c', 5), /no logits for position 5/);
});

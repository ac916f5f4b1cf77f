import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listGoldenFixtures, loadGoldenFixture, compareLogits } from '../../helpers/golden.js';

const fixtures = listGoldenFixtures();

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

function top2Margin(row: Float32Array): number {
  let a = -Infinity;
  let b = -Infinity;
  for (const v of row) {
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

test('the fixtures a, b and demo are present', () => {
  for (const name of ['a', 'b', 'demo']) assert.ok(fixtures.includes(name), `fixture ${name} (found ${fixtures.join(', ')})`);
});

for (const name of fixtures) {
  test(`golden fixture ${name}: loads with consistent shapes`, () => {
    const fx = loadGoldenFixture(name);
    assert.equal(fx.vocabSize, 32000);
    assert.ok(fx.cases.length >= 4, 'at least four cases');
    for (const c of fx.cases) {
      assert.equal(c.logits.length, c.logitPositions.length * fx.vocabSize, `${c.name}: logits length`);
      assert.ok(c.logitPositions.length > 0, `${c.name}: stores some logits`);
      for (let i = 0; i < c.logitPositions.length; i++) {
        const p = c.logitPositions[i]!;
        assert.ok(p >= 0 && p < c.promptTokens.length, `${c.name}: position ${p} inside the prompt`);
        if (i > 0) assert.ok(p > c.logitPositions[i - 1]!, `${c.name}: positions ascending`);
      }
      for (const t of [...c.promptTokens, ...c.greedyTokens]) assert.ok(t >= 0 && t < fx.vocabSize, `${c.name}: token ${t} in vocab`);
      assert.ok(c.logits.every(Number.isFinite), `${c.name}: finite logits`);
      assert.equal(c.greedyTop2Margins.length, c.greedyTokens.length);
    }
  });

  test(`golden fixture ${name}: greedy tokens and margins agree with the stored last-position logits`, () => {
    const fx = loadGoldenFixture(name);
    let checked = 0;
    for (const c of fx.cases) {
      const last = c.promptTokens.length - 1;
      if (c.greedyTokens.length === 0 || !c.logitPositions.includes(last)) continue;
      const row = fx.logitsAt(c.name, last);
      assert.equal(argmax(row), c.greedyTokens[0], `${c.name}: first greedy token is the argmax`);
      // The margin was computed in float64 and the file holds float32 values.
      assert.ok(Math.abs(top2Margin(row) - c.greedyTop2Margins[0]!) < 1e-4 * (1 + Math.abs(row[argmax(row)]!)), `${c.name}: margin`);
      checked++;
    }
    assert.ok(checked >= 2, `at least two cases checked (got ${checked})`);
  });

  test(`golden fixture ${name}: the float64 reference matched transformers`, () => {
    const { crossCheck } = loadGoldenFixture(name).json;
    assert.equal(crossCheck.status, 'ok');
    assert.equal(crossCheck.goldensReproducedOnCheck, true);
    assert.equal(crossCheck.greedyTokensEqual, true);
    assert.ok(crossCheck.maxRelError! < 1e-6, `float64-throughout rel error ${crossCheck.maxRelError}`);
    assert.ok((crossCheck.checks ?? []).length >= 4, 'several comparisons recorded');
    const modes = new Set((crossCheck.checks ?? []).map((c) => c.mode.split(' ')[0]));
    assert.ok(modes.has('full-forward') && modes.has('prefill'), 'full forward and prefill-then-decode both compared');
    // transformers as shipped keeps some float32 arithmetic: close, but not float64-close.
    assert.equal(crossCheck.asShipped?.greedyTokensEqual, true);
    assert.ok(crossCheck.asShipped!.maxRelError! < 2e-5, `as-shipped rel error ${crossCheck.asShipped!.maxRelError}`);
  });

  test(`golden fixture ${name}: checkpoint folder matches the recorded dims`, () => {
    const fx = loadGoldenFixture(name);
    for (const f of ['config.json', 'model.safetensors', 'generation_config.json']) {
      assert.ok(existsSync(join(fx.checkpointDir, f)), `${fx.checkpointDir}/${f}`);
    }
    const config = JSON.parse(readFileSync(join(fx.checkpointDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config.hidden_size, fx.json.dims.hiddenSize);
    assert.equal(config.num_hidden_layers, fx.json.dims.numLayers);
    assert.equal(config.vocab_size, fx.vocabSize);
    const kinds = config.layers_block_type as string[];
    assert.deepEqual(kinds.flatMap((k, i) => (k === 'hybrid' ? [i] : [])), fx.json.dims.hybridLayerIds);
  });
}

test('fixture a is the 1.2B-like family and fixture b the 2.7B/7B-like one', () => {
  const a = loadGoldenFixture('a').json.dims;
  const b = loadGoldenFixture('b').json.dims;
  assert.equal(a.numMemBlocks, 1);
  assert.equal(a.useMemRope, true);
  assert.equal(a.useSharedAttentionAdapter, true);
  assert.equal(b.numMemBlocks, 2);
  assert.equal(b.useMemRope, false);
  assert.equal(b.mambaNGroups, 2);
  assert.equal(b.attentionHeadDim, 40);
  // b's config.json is in the hub's original format, a's in the format transformers 5.x writes.
  const cfgA = JSON.parse(readFileSync(join(loadGoldenFixture('a').checkpointDir, 'config.json'), 'utf8'));
  const cfgB = JSON.parse(readFileSync(join(loadGoldenFixture('b').checkpointDir, 'config.json'), 'utf8'));
  assert.ok(cfgA.layers_block_type.includes('linear_attention') && cfgA.rope_parameters);
  assert.ok(cfgB.layers_block_type.includes('mamba') && cfgB.rope_theta && cfgB.torch_dtype);
});

test('the dt floor matters in the random fixtures (goldens would catch an engine that applies it)', () => {
  for (const name of ['a', 'b']) {
    const { crossCheck } = loadGoldenFixture(name).json;
    assert.ok(crossCheck.dtFloorOnMaxRelError_len100! > 1e-2, `${name}: ${crossCheck.dtFloorOnMaxRelError_len100}`);
  }
});

test('prompts longer than one 256-token chunk are covered', () => {
  for (const name of fixtures) {
    const fx = loadGoldenFixture(name);
    const long = fx.cases.filter((c) => c.promptTokens.length > 256);
    assert.ok(long.length >= 1, `${name} has a multi-chunk prompt`);
    assert.ok(long.some((c) => c.greedyTokens.length > 0), `${name} decodes after a multi-chunk prefill`);
    const stored = compareLogits(fx.logitsAt(long[0]!.name, 299), fx.logitsAt(long[0]!.name, 299), fx.vocabSize);
    assert.equal(stored.maxAbsError, 0);
  }
});

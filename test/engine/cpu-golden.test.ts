// The CPU engine against every golden fixture (test/golden/fixtures/*: float64 reference logits
// and greedy continuations), through the Engine seam: chunked prefill, greedy decode, chunking
// invariance, a mixed batch, and a reused slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCpuEngine } from '../../src/engine/cpu/index.js';
import type { Engine } from '../../src/engine/engine.js';
import { EngineDriver, goldenRowsOf } from '../helpers/engine-driver.js';
import { assertLogitsClose, listGoldenFixtures, loadGoldenFixture, type GoldenCase } from '../helpers/golden.js';

const PREFILL_CHUNK = 64;
const MAX_PAGES = 32; // 512 positions per sequence
const SLOTS = 4;

const pagesOf = (slot: number) => Int32Array.from({ length: MAX_PAGES }, (_, i) => slot * MAX_PAGES + i);
const driver = new EngineDriver(pagesOf);
const plan = driver.plan.bind(driver);
const seq = driver.seq.bind(driver);
const prefill = driver.prefill.bind(driver);

/** Golden rows vs the same positions of a prompt's full logits; relative error per row ≤ 1e-3. */
function assertGoldenRows(logits: Float32Array, c: GoldenCase, V: number, label: string): void {
  assertLogitsClose(goldenRowsOf(logits, c, V), c.logits, { maxRelError: 1e-3, vocabSize: V, label: `${label} ${c.name}`, positions: c.logitPositions });
}

async function greedyContinue(engine: Engine, slot: number, promptLength: number, first: number, count: number): Promise<number[]> {
  const out = [first];
  while (out.length < count) {
    const r = await engine.step(plan([seq(slot, promptLength + out.length - 1, [out[out.length - 1]!], promptLength)]));
    out.push(r.outputs[0]!.token);
  }
  return out;
}

for (const name of listGoldenFixtures()) {
  test(`cpu engine matches golden fixture "${name}"`, async (t) => {
    const fx = loadGoldenFixture(name);
    const engine = await createCpuEngine({ modelDir: fx.checkpointDir, maxTokensPerStep: 512 });
    try {
      await engine.initCache({ slotCount: SLOTS, pageCount: SLOTS * MAX_PAGES });
      const V = engine.describe().vocabSize;
      assert.equal(V, fx.vocabSize);

      await t.test('logits within 1e-3 and identical greedy continuations (64-token chunks, slot 0 reused)', async () => {
        for (const c of fx.cases) {
          const { logits, token } = await prefill(engine, 0, c.promptTokens, PREFILL_CHUNK);
          assertGoldenRows(logits, c, V, `${name} 64-token chunks`);
          if (c.greedyTokens.length > 0) {
            const got = await greedyContinue(engine, 0, c.promptTokens.length, token, c.greedyTokens.length);
            assert.deepEqual(got, Array.from(c.greedyTokens), c.name);
          }
        }
      });

      await t.test('one chunk, several chunks and token by token give the same logits', async () => {
        const c = fx.cases.reduce((a, b) => (Math.abs(b.promptTokens.length - 40) < Math.abs(a.promptTokens.length - 40) ? b : a));
        const one = await prefill(engine, 1, c.promptTokens, c.promptTokens.length);
        for (const chunk of [7, 1]) {
          const other = await prefill(engine, 1, c.promptTokens, chunk);
          let err = 0;
          let scale = 0;
          one.logits.forEach((v, i) => {
            err = Math.max(err, Math.abs(v - other.logits[i]!));
            scale = Math.max(scale, Math.abs(v));
          });
          assert.ok(err / scale <= 1e-5, `${c.name} chunks of ${chunk}: relative difference ${err / scale}`);
          assert.equal(other.token, one.token);
        }
        assertGoldenRows(one.logits, c, V, `${name} one chunk`);
      });

      await t.test('a prompt longer than one graph run (256) in a single step matches too', async () => {
        for (const c of fx.cases.filter((k) => k.promptTokens.length > 256)) {
          const { logits, token } = await prefill(engine, 2, c.promptTokens, c.promptTokens.length);
          assertGoldenRows(logits, c, V, `${name} single step`);
          if (c.greedyTokens.length > 0) assert.equal(token, c.greedyTokens[0]);
        }
      });

      await t.test('a mixed batch gives each sequence its golden continuation', async () => {
        const cases = fx.cases.filter((c) => c.greedyTokens.length > 0 && c.promptTokens.length <= 256).slice(0, SLOTS);
        // all prompts in one step (each its own chunk length), then every decode batched together
        const first = await engine.step(plan(cases.map((c, i) => seq(i, 0, c.promptTokens, c.promptTokens.length)), cases.map((_, i) => i)));
        const got = first.outputs.map((o) => [o.token]);
        const steps = Math.min(...cases.map((c) => c.greedyTokens.length));
        for (let k = 1; k < steps; k++) {
          const r = await engine.step(plan(cases.map((c, i) => seq(i, c.promptTokens.length + k - 1, [got[i]![k - 1]!], c.promptTokens.length))));
          r.outputs.forEach((o, i) => got[i]!.push(o.token));
        }
        cases.forEach((c, i) => assert.deepEqual(got[i], Array.from(c.greedyTokens.subarray(0, steps)), c.name));
      });
    } finally {
      await engine.close();
    }
  });
}

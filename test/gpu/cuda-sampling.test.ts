// GPU sampling of the CUDA engine (kernels/src/sampling.cu through zamba2-sampling.cc) on every
// golden fixture: a seeded request draws the same tokens alone and inside a batch of other
// sequences; temperature -> 0 is greedy; and the GPU sampler agrees with the host sampler
// (ZAMBA2_HOST_SAMPLING path of a second engine) on tokens, logprobs (1e-3) and top logprobs with
// every knob on (temperature, top-k, top-p, min-p, penalties, bias, seed). Needs the built addon
// and a GPU (npm run build:cuda; npm run test:gpu).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCudaEngine } from '../../src/engine/cuda/index.js';
import { GREEDY, type Engine, type SamplingParams, type SequenceOutput } from '../../src/engine/engine.js';
import { EngineDriver } from '../helpers/engine-driver.js';
import { listGoldenFixtures, loadGoldenFixture } from '../helpers/golden.js';

const MAX_PAGES = 32;
const SLOTS = 6;
const CHUNK = 64;
const STEPS = 8;
const pagesOf = (slot: number) => Int32Array.from({ length: MAX_PAGES }, (_, i) => i * SLOTS + slot);
const driver = new EngineDriver(pagesOf);

const open = (dir: string, hostSampling: boolean) =>
  createCudaEngine({ modelDir: dir, maxTokensPerStep: 512, maxSequencesPerStep: 8, maxModelLen: MAX_PAGES * 16, hostSampling, seed: 11 });

/** Prefills `prompt` into `slot`, then decodes STEPS tokens with `sampling`, `others` riding along in every decode step. */
async function sampleRun(engine: Engine, slot: number, prompt: Int32Array, sampling: SamplingParams, others: { slot: number; prompt: Int32Array; sampling: SamplingParams }[] = []): Promise<SequenceOutput[]> {
  const all = [{ slot, prompt, sampling }, ...others];
  const last: number[] = [];
  for (const s of all) {
    let tok = -1;
    for (let start = 0; start < s.prompt.length; start += CHUNK) {
      const part = s.prompt.slice(start, start + CHUNK);
      const r = await engine.step(driver.plan([driver.seq(s.slot, start, part, s.prompt.length, { sampling: s.sampling })], start === 0 ? [s.slot] : []));
      tok = r.outputs[0]!.token;
    }
    last.push(tok);
  }
  const outs: SequenceOutput[] = [];
  for (let k = 0; k < STEPS; k++) {
    const r = await engine.step(driver.plan(all.map((s, i) => driver.seq(s.slot, s.prompt.length + k, [last[i]!], s.prompt.length, { sampling: s.sampling }))));
    r.outputs.forEach((o, i) => (last[i] = o.token));
    outs.push(r.outputs[0]!);
  }
  return outs;
}

for (const name of listGoldenFixtures()) {
  test(`cuda GPU sampling on golden fixture "${name}"`, async (t) => {
    const fx = loadGoldenFixture(name);
    const gpu = await open(fx.checkpointDir, false);
    const host = await open(fx.checkpointDir, true);
    try {
      await gpu.initCache({ slotCount: SLOTS, pageCount: SLOTS * MAX_PAGES });
      await host.initCache({ slotCount: SLOTS, pageCount: SLOTS * MAX_PAGES });
      const V = gpu.describe().vocabSize;
      const cases = fx.cases.filter((c) => c.promptTokens.length >= 2 && c.promptTokens.length <= 256);
      const c = cases[0]!;
      const prompt = Int32Array.from(c.promptTokens);

      await t.test('a seeded request draws the same tokens alone and inside a batch', async () => {
        const sampling = { ...GREEDY, temperature: 0.8, topK: 40, seed: 4242 };
        const alone = await sampleRun(gpu, 0, prompt, sampling);
        const others = cases.slice(1, 4).map((o, i) => ({ slot: i + 1, prompt: Int32Array.from(o.promptTokens), sampling: { ...GREEDY, temperature: 1.2, topP: 0.9, seed: i } }));
        if (others.length === 0) others.push({ slot: 1, prompt, sampling: { ...GREEDY, temperature: 1.2, seed: 7 } });
        const batched = await sampleRun(gpu, 0, prompt, sampling, others);
        assert.deepEqual(batched.map((o) => o.token), alone.map((o) => o.token));
      });

      await t.test('temperature 0 with logprobs (GPU sampler) and temperature 1e-5 pick the greedy tokens', async () => {
        const greedy = await sampleRun(gpu, 0, prompt, { ...GREEDY, logprobs: 0 });
        const zero = await sampleRun(gpu, 0, prompt, { ...GREEDY, logprobs: 3 });
        assert.deepEqual(zero.map((o) => o.token), greedy.map((o) => o.token));
        zero.forEach((o) => {
          assert.equal(o.logprobs!.top!.tokenIds[0], o.token);
          assert.ok(Math.abs(o.logprobs!.logprob - o.logprobs!.top!.logprobs[0]!) < 1e-6);
        });
        // a tiny temperature leaves only the max (a runner-up within 1e-5 * 745 of it keeps a share)
        const cold = await sampleRun(gpu, 0, prompt, { ...GREEDY, temperature: 1e-5, logprobs: 2, seed: 3 });
        for (let k = 0; k < STEPS; k++) {
          const lp = zero[k]!.logprobs!.top!.logprobs;
          if (lp[0]! - lp[1]! < 1e-2) break; // near tie: the continuations may part here
          assert.equal(cold[k]!.token, greedy[k]!.token, `step ${k}`);
        }
      });

      await t.test('GPU and host samplers agree (tokens, logprobs within 1e-3, top logprobs) with every knob on', async () => {
        const knobs: SamplingParams[] = [
          { ...GREEDY, temperature: 0.9, topP: 0.95, topK: 40, minP: 0.02, seed: 99, logprobs: 5 },
          { ...GREEDY, temperature: 1.1, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.3, seed: 5, logprobs: 20, logitBias: new Map([[1 % V, 2.5], [2 % V, -100]]) },
          { ...GREEDY, temperature: 0, repetitionPenalty: 1.5, logprobs: 2 },
          { ...GREEDY, temperature: 0.7, minP: 0.1, seed: null, logprobs: 1 },
        ];
        for (const sampling of knobs) {
          const a = await sampleRun(gpu, 0, prompt, sampling);
          const b = await sampleRun(host, 0, prompt, sampling);
          a.forEach((o, k) => {
            const h = b[k]!;
            assert.equal(o.token, h.token, `step ${k}: GPU ${o.token} vs host ${h.token}`);
            assert.ok(Math.abs(o.logprobs!.logprob - h.logprobs!.logprob) <= 1e-3, `step ${k}: logprob ${o.logprobs!.logprob} vs ${h.logprobs!.logprob}`);
            const gt = o.logprobs!.top!, ht = h.logprobs!.top!;
            assert.equal(gt.tokenIds.length, ht.tokenIds.length);
            // rank by rank: ids may differ only where the logprobs tie within 1e-3 (checked by value)
            for (let j = 0; j < gt.tokenIds.length; j++) {
              assert.ok(Math.abs(gt.logprobs[j]! - ht.logprobs[j]!) <= 1e-3, `step ${k} top ${j}: ${gt.logprobs[j]} vs ${ht.logprobs[j]}`);
            }
            const sameIds = gt.tokenIds.filter((id, j) => id === ht.tokenIds[j]).length;
            assert.ok(sameIds >= gt.tokenIds.length - 2, `step ${k}: top ids ${Array.from(gt.tokenIds)} vs ${Array.from(ht.tokenIds)}`);
          });
        }
      });
    } finally {
      await gpu.close();
      await host.close();
    }
  });
}

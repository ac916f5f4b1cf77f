// CpuEngine through the Engine seam on a small random model: logits against the float64
// reference across chunking, slot/page bookkeeping, batch invariance, reset, copySlot, logprobs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tinyDims, randomWeights } from './random-weights.js';
import { CpuEngine } from '../../../../src/engine/cpu/cpu-engine.js';
import { Zamba2Reference } from '../../../../src/engine/cpu/reference.js';
import { logSoftmax } from '../../../../src/engine/cpu/sampler.js';
import { GREEDY, type SamplingParams, type ScheduledSequence, type StepPlan } from '../../../../src/engine/engine.js';

const dims = tinyDims({ layerKinds: ['mamba', 'hybrid', 'mamba', 'hybrid'], numMemBlocks: 2, useSharedAttentionAdapter: true, mambaNGroups: 2 });
const weights = randomWeights(dims, 5);
const reference = new Zamba2Reference(dims, weights);

async function newEngine(): Promise<CpuEngine> {
  const e = await CpuEngine.create(dims, weights, { threads: 1, maxTokensPerStep: 64, cacheBudgetBytes: 64 * 1024 ** 2 });
  await e.initCache({ slotCount: 6, pageCount: 40 });
  return e;
}

let stepId = 0;
function plan(sequences: ScheduledSequence[], resetSlots: number[] = []): StepPlan {
  return { stepId: stepId++, sequences, resetSlots: Int32Array.from(resetSlots), releasedSeqIds: [] };
}

/** Pages given out in a scrambled order so page-table indirection is exercised. */
const pageTableFor = (base: number) => Int32Array.from({ length: 4 }, (_, i) => (base + i * 7) % 40);

function chunk(seqId: number, slot: number, pageTable: Int32Array, startPosition: number, tokens: number[], extra: Partial<ScheduledSequence> = {}): ScheduledSequence {
  return {
    seqId,
    slot,
    pageTable,
    startPosition,
    tokens: Int32Array.from(tokens),
    promptLength: extra.promptLength ?? startPosition + tokens.length,
    sample: true,
    sampling: GREEDY,
    promptLogprobs: null,
    returnLogits: true,
    ...extra,
  };
}

function assertClose(got: Float32Array, want: Float64Array[], what: string): void {
  const V = dims.vocabSize;
  let err = 0;
  let scale = 0;
  want.forEach((row, t) => row.forEach((w, v) => {
    err = Math.max(err, Math.abs(got[t * V + v]! - w));
    scale = Math.max(scale, Math.abs(w));
  }));
  assert.ok(err / scale <= 1e-4, `${what}: rel error ${err / scale}`);
}

const prompt = [1, 17, 33, 5, 9, 60, 2, 44, 31, 8, 12, 19, 23, 7, 3, 50, 41, 11, 29, 30];

test('engine logits match the reference across chunked prefill and decode, in any slot', async () => {
  const e = await newEngine();
  try {
    const want = reference.forward(reference.newState(), [...prompt, 4, 6]);
    const pt = pageTableFor(3);
    const a = await e.step(plan([chunk(1, 4, pt, 0, prompt.slice(0, 13), { sample: false, promptLength: 20 })], [4]));
    assert.equal(a.outputs[0]!.token, -1);
    assertClose(a.outputs[0]!.logits!, want.slice(0, 13), 'chunk 1');
    const b = await e.step(plan([chunk(1, 4, pt, 13, prompt.slice(13), { promptLength: 20 })]));
    assertClose(b.outputs[0]!.logits!, want.slice(13, 20), 'chunk 2');
    const V = dims.vocabSize;
    const lastRow = Array.from(want[19]!);
    assert.equal(b.outputs[0]!.token, lastRow.indexOf(Math.max(...lastRow)), 'greedy token is the reference argmax');
    for (const [i, t] of [[20, 4], [21, 6]] as const) {
      const d = await e.step(plan([chunk(1, 4, pt, i, [t], { promptLength: 20 })]));
      assertClose(d.outputs[0]!.logits!, want.slice(i, i + 1), `decode ${i}`);
      assert.equal(d.outputs[0]!.logits!.length, V);
    }
  } finally {
    await e.close();
  }
});

test('a mixed batch gives each sequence the same output as alone; a reset slot starts clean', async () => {
  const prompts = [prompt.slice(0, 9), prompt.slice(3, 8), prompt.slice(5, 20)];
  const alone: Float32Array[][] = [];
  {
    const e = await newEngine();
    for (let i = 0; i < prompts.length; i++) {
      const pt = pageTableFor(i * 11);
      const logits: Float32Array[] = [];
      // reuse slot 0 for every sequence: reset must leave no trace of the previous one
      const p = await e.step(plan([chunk(i, 0, pt, 0, prompts[i]!)], [0]));
      logits.push(p.outputs[0]!.logits!);
      let tok = p.outputs[0]!.token;
      for (let k = 0; k < 3; k++) {
        const r = await e.step(plan([chunk(i, 0, pt, prompts[i]!.length + k, [tok], { promptLength: prompts[i]!.length })]));
        logits.push(r.outputs[0]!.logits!);
        tok = r.outputs[0]!.token;
      }
      alone.push(logits);
    }
    await e.close();
  }
  const e = await newEngine();
  try {
    // prefills in one step (two share a chunk length 5? no: 9, 5, 15 — three groups), then batched decodes
    const first = await e.step(plan(prompts.map((p, i) => chunk(i, i + 1, pageTableFor(i * 11), 0, p)), [1, 2, 3]));
    const toks = first.outputs.map((o) => o.token);
    first.outputs.forEach((o, i) => assert.deepEqual(o.logits, alone[i]![0], `prefill ${i}`));
    for (let k = 0; k < 3; k++) {
      const r = await e.step(plan(prompts.map((p, i) => chunk(i, i + 1, pageTableFor(i * 11), p.length + k, [toks[i]!], { promptLength: p.length }))));
      r.outputs.forEach((o, i) => {
        const want = alone[i]![k + 1]!;
        const err = Math.max(...o.logits!.map((v, j) => Math.abs(v - want[j]!)));
        assert.ok(err <= 1e-5 * Math.max(...want.map(Math.abs)), `decode ${k} seq ${i}: ${err}`);
        toks[i] = o.token;
      });
    }
  } finally {
    await e.close();
  }
});

test('copySlot forks the state: the copy continues exactly like the original', async () => {
  const e = await newEngine();
  try {
    const pt = pageTableFor(1);
    await e.step(plan([chunk(1, 2, pt, 0, prompt.slice(0, 16), { sample: false })], [2]));
    await e.copySlot(2, 5);
    // both continue with the same token; the fork shares the full prompt page and writes its own next page
    const ptFork = Int32Array.from([pt[0]!, 39]);
    const a = await e.step(plan([chunk(1, 2, pt, 16, [7])]));
    const b = await e.step(plan([chunk(2, 5, ptFork, 16, [7])]));
    assert.deepEqual(a.outputs[0]!.logits, b.outputs[0]!.logits);
  } finally {
    await e.close();
  }
});

test('prompt logprobs across chunks are the log-softmax of the previous position, with top-N', async () => {
  const e = await newEngine();
  try {
    const want = reference.forward(reference.newState(), prompt.slice(0, 12));
    const pt = pageTableFor(0);
    const a = await e.step(plan([chunk(1, 0, pt, 0, prompt.slice(0, 7), { sample: false, promptLogprobs: 3, promptLength: 12 })], [0]));
    const b = await e.step(plan([chunk(1, 0, pt, 7, prompt.slice(7, 12), { promptLogprobs: 3, promptLength: 12, sampling: { ...GREEDY, logprobs: 2 } })]));
    const lps = [...a.outputs[0]!.promptLogprobs!, ...b.outputs[0]!.promptLogprobs!];
    assert.equal(lps.length, 11, 'every prompt token but the first');
    lps.forEach((lp, i) => {
      const ref = logSoftmax(want[i]!);
      assert.equal(lp.tokenId, prompt[i + 1]);
      assert.ok(Math.abs(lp.logprob - ref[prompt[i + 1]!]!) < 1e-3, `position ${i + 1}`);
      assert.equal(lp.top!.tokenIds.length, 3);
      assert.ok(lp.top!.logprobs[0]! >= lp.top!.logprobs[1]! && lp.top!.logprobs[1]! >= lp.top!.logprobs[2]!);
    });
    const sampled = b.outputs[0]!.logprobs!;
    assert.equal(sampled.tokenId, b.outputs[0]!.token);
    assert.equal(sampled.top!.tokenIds[0], sampled.tokenId, 'greedy token is the top-1');
  } finally {
    await e.close();
  }
});

test('seeded sampling reproduces the same tokens; different seeds diverge', async () => {
  const run = async (seed: number) => {
    const e = await newEngine();
    const sampling: SamplingParams = { ...GREEDY, temperature: 1.5, seed };
    const pt = pageTableFor(2);
    const out: number[] = [];
    let r = await e.step(plan([chunk(1, 3, pt, 0, prompt.slice(0, 5), { sampling })], [3]));
    for (let k = 0; k < 12; k++) {
      out.push(r.outputs[0]!.token);
      r = await e.step(plan([chunk(1, 3, pt, 5 + k, [r.outputs[0]!.token], { sampling, promptLength: 5 })]));
    }
    await e.close();
    return out;
  };
  const a = await run(42);
  assert.deepEqual(await run(42), a);
  assert.notDeepEqual(await run(43), a);
});

test('the engine reports real byte sizes and rejects bad plans', async () => {
  const e = await newEngine();
  try {
    const d = e.describe();
    assert.equal(d.stateSlotBytes, dims.numLayers * (3 * dims.convDim + dims.nMambaHeads * dims.mambaHeadDim * dims.mambaDState) * 4);
    assert.equal(d.kvPageBytes, 16 * dims.hybridLayerIds.length * 2 * 2 * dims.hiddenSize * 4);
    assert.equal(d.attentionLayerCount, 2);
    await assert.rejects(e.step(plan([chunk(1, 9, pageTableFor(0), 0, [1])])), /slot/);
    await assert.rejects(e.step(plan([chunk(1, 0, pageTableFor(0), 3, [1])], [0])), /start position/);
  } finally {
    await e.close();
  }
});

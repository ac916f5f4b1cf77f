// The ONNX step graph (src/engine/cpu/onnx-builder.ts) against the float64 sequential reference on
// small random models: one-shot, chunked continuation and batched rows with ragged pasts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tinyDims, randomWeights, seededRandom, type TinyConfig } from './random-weights.js';
import { StepSession, type StepBatchOutput } from '../../../../src/engine/cpu/step-session.js';
import { Zamba2Reference } from '../../../../src/engine/cpu/reference.js';
import type { Zamba2Dims } from '../../../../src/model/types.js';

/** A sequence's carried state as the graph sees it (B = 1). */
interface GraphSeq {
  conv: Float32Array[];
  ssm: Float32Array[];
  keys: Float32Array[];
  values: Float32Array[];
  position: number;
}

function newSeq(d: Zamba2Dims): GraphSeq {
  return {
    conv: Array.from({ length: d.numLayers }, () => new Float32Array(3 * d.convDim)),
    ssm: Array.from({ length: d.numLayers }, () => new Float32Array(d.nMambaHeads * d.mambaHeadDim * d.mambaDState)),
    keys: d.hybridLayerIds.map(() => new Float32Array(0)),
    values: d.hybridLayerIds.map(() => new Float32Array(0)),
    position: 0,
  };
}

const concat = (a: Float32Array, b: Float32Array) => {
  const r = new Float32Array(a.length + b.length);
  r.set(a);
  r.set(b, a.length);
  return r;
};

/** Runs a chunk for several sequences at once (same T), padding pasts to the longest. */
async function runBatch(s: StepSession, seqs: GraphSeq[], chunks: number[][]): Promise<Float32Array[]> {
  const d = s.dims;
  const B = seqs.length;
  const T = chunks[0]!.length;
  const H2 = d.attentionHiddenSize;
  const P = Math.max(...seqs.map((q) => q.position));
  const stack = (parts: Float32Array[]) => {
    const r = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      r.set(p, o);
      o += p.length;
    }
    return r;
  };
  const padPast = (rows: Float32Array[]) => {
    const r = new Float32Array(B * P * H2);
    rows.forEach((p, b) => r.set(p, b * P * H2));
    return r;
  };
  const out: StepBatchOutput = await s.run({
    batch: B,
    chunk: T,
    past: P,
    tokenIds: Int32Array.from(chunks.flat()),
    logitsRows: Int32Array.from({ length: B * T }, (_, i) => i),
    positions: Int32Array.from(seqs.flatMap((q) => Array.from({ length: T }, (_, i) => q.position + i))),
    pastLengths: Int32Array.from(seqs.map((q) => q.position)),
    convStates: d.layerKinds.map((_, l) => stack(seqs.map((q) => q.conv[l]!))),
    ssmStates: d.layerKinds.map((_, l) => stack(seqs.map((q) => q.ssm[l]!))),
    pastKeys: d.hybridLayerIds.map((_, a) => padPast(seqs.map((q) => q.keys[a]!))),
    pastValues: d.hybridLayerIds.map((_, a) => padPast(seqs.map((q) => q.values[a]!))),
  });
  const V = d.vocabSize;
  return seqs.map((q, b) => {
    d.layerKinds.forEach((_, l) => {
      q.conv[l] = out.convStates[l]!.slice(b * q.conv[l]!.length, (b + 1) * q.conv[l]!.length);
      q.ssm[l] = out.ssmStates[l]!.slice(b * q.ssm[l]!.length, (b + 1) * q.ssm[l]!.length);
    });
    d.hybridLayerIds.forEach((_, a) => {
      q.keys[a] = concat(q.keys[a]!, out.newKeys[a]!.slice(b * T * H2, (b + 1) * T * H2));
      q.values[a] = concat(q.values[a]!, out.newValues[a]!.slice(b * T * H2, (b + 1) * T * H2));
    });
    q.position += T;
    return out.logits.slice(b * T * V, (b + 1) * T * V);
  });
}

/** max |got − want| / max |want| over all positions. */
function relError(got: Float32Array, want: Float64Array[]): number {
  const V = want[0]!.length;
  let err = 0;
  let scale = 0;
  want.forEach((row, t) =>
    row.forEach((w, v) => {
      err = Math.max(err, Math.abs(got[t * V + v]! - w));
      scale = Math.max(scale, Math.abs(w));
    }),
  );
  return err / scale;
}

const CASES: Array<[string, TinyConfig]> = [
  ['one block, adapters, rope', { layerKinds: ['mamba', 'hybrid', 'mamba', 'hybrid'], useSharedAttentionAdapter: true }],
  ['two blocks, ngroups 2, no rope', { layerKinds: ['hybrid', 'mamba', 'hybrid', 'mamba', 'hybrid'], numMemBlocks: 2, mambaNGroups: 2, useMemRope: false, nMambaHeads: 8 }],
  ['odd head dims, d_state 5', { layerKinds: ['mamba', 'hybrid'], hiddenSize: 30, numAttentionHeads: 3, nMambaHeads: 5, mambaDState: 5, intermediateSize: 44 }],
  ['mamba only', { layerKinds: ['mamba', 'mamba'] }],
];

for (const [name, cfg] of CASES) {
  test(`step graph matches the float64 reference: ${name}`, async () => {
    const d = tinyDims(cfg);
    const w = randomWeights(d, 7);
    const rnd = seededRandom(3);
    const tokens = Array.from({ length: 23 }, () => Math.floor(rnd() * d.vocabSize));
    const ref = new Zamba2Reference(d, w);
    const want = ref.forward(ref.newState(), tokens);
    const s = await StepSession.create(d, w, { threads: 1 });
    try {
      const [oneShot] = await runBatch(s, [newSeq(d)], [tokens]);
      assert.ok(relError(oneShot!, want) <= 1e-4, `one-shot rel error ${relError(oneShot!, want)}`);

      // chunks 7 + 1 + 10 + 5 continue from carried conv/SSM state and past K/V
      const seq = newSeq(d);
      const parts: Float32Array[] = [];
      for (const [a, b] of [[0, 7], [7, 8], [8, 18], [18, 23]] as const) parts.push(...(await runBatch(s, [seq], [tokens.slice(a, b)])));
      const chunked = parts.reduce(concat);
      assert.ok(relError(chunked, want) <= 1e-4, `chunked rel error ${relError(chunked, want)}`);
    } finally {
      await s.close();
    }
  });
}

test('step graph: a batch with ragged pasts gives each row its own sequence result', async () => {
  const d = tinyDims({ layerKinds: ['mamba', 'hybrid', 'mamba'], useSharedAttentionAdapter: true });
  const w = randomWeights(d, 11);
  const ref = new Zamba2Reference(d, w);
  const prompts = [[3, 4, 5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]];
  const s = await StepSession.create(d, w, { threads: 1 });
  try {
    const seqs = prompts.map(() => newSeq(d));
    const refStates = prompts.map(() => ref.newState());
    for (let i = 0; i < prompts.length; i++) {
      await runBatch(s, [seqs[i]!], [prompts[i]!]);
      ref.forward(refStates[i]!, prompts[i]!);
    }
    // two decode steps with all three sequences in one batch
    for (const next of [[20, 21, 22], [30, 31, 32]]) {
      const got = await runBatch(s, seqs, next.map((t) => [t]));
      got.forEach((g, i) => {
        const want = ref.forward(refStates[i]!, [next[i]!]);
        assert.ok(relError(g, want) <= 1e-4, `row ${i}: rel error ${relError(g, want)}`);
      });
    }
  } finally {
    await s.close();
  }
});

test('step graph with its weights in an external-data file (the path large models take) gives the same logits', async () => {
  const d = tinyDims({ layerKinds: ['mamba', 'hybrid'], useSharedAttentionAdapter: true });
  const w = randomWeights(d, 13);
  const tokens = [5, 9, 14, 2, 33, 40, 7];
  const want = new Zamba2Reference(d, w);
  const ref = want.forward(want.newState(), tokens);
  let external = false;
  const s = await StepSession.create(d, w, { threads: 1, inlineWeightLimitBytes: 0, onTiming: (t) => (external = t.external) });
  try {
    assert.equal(external, true);
    const [got] = await runBatch(s, [newSeq(d)], [tokens]);
    assert.ok(relError(got!, ref) <= 1e-4, `rel error ${relError(got!, ref)}`);
  } finally {
    await s.close();
  }
});

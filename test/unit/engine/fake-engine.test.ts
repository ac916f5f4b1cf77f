import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EngineError, GREEDY, type SamplingParams, type ScheduledSequence, type StepPlan } from '../../../src/engine/engine.js';
import { FakeEngine, type FakeEngineOptions } from '../../../src/engine/fake/fake-engine.js';

const NONE = new Int32Array(0);

function seq(o: Omit<Partial<ScheduledSequence>, 'tokens' | 'pageTable'> & { seqId: number; slot: number; tokens: number[] | Int32Array; pages: number[] }): ScheduledSequence {
  const tokens = Int32Array.from(o.tokens);
  return {
    seqId: o.seqId,
    slot: o.slot,
    pageTable: Int32Array.from(o.pages),
    startPosition: o.startPosition ?? 0,
    tokens,
    promptLength: o.promptLength ?? tokens.length,
    sample: o.sample ?? true,
    sampling: o.sampling ?? GREEDY,
    promptLogprobs: o.promptLogprobs ?? null,
    ...(o.returnLogits ? { returnLogits: true } : {}),
  };
}

let stepCounter = 0;
function plan(sequences: ScheduledSequence[], extra: { reset?: number[]; released?: number[] } = {}): StepPlan {
  return { stepId: ++stepCounter, sequences, resetSlots: Int32Array.from(extra.reset ?? []), releasedSeqIds: extra.released ?? [] };
}

async function engine(options: FakeEngineOptions = {}, slotCount = 4, pageCount = 16): Promise<FakeEngine> {
  const e = new FakeEngine(options);
  await e.initCache({ slotCount, pageCount });
  return e;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof EngineError && e.code === code);
}

const promptTokens = [5, 17, 300, 4000, 12, 99, 31000, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19];

/** Greedy continuation of `tokens` on a fresh engine, whole prompt at once, alone. */
async function generateAlone(tokens: number[], steps: number, sampling: SamplingParams = GREEDY): Promise<number[]> {
  const e = await engine();
  const out: number[] = [];
  let r = await e.step(plan([seq({ seqId: 1, slot: 0, tokens, pages: [0, 1, 2, 3], sampling })], { reset: [0] }));
  let position = tokens.length;
  for (let i = 0; i < steps; i++) {
    const t = r.outputs[0]!.token;
    out.push(t);
    r = await e.step(plan([seq({ seqId: 1, slot: 0, startPosition: position++, tokens: [t], pages: [0, 1, 2, 3], promptLength: tokens.length, sampling })]));
  }
  return out;
}

describe('FakeEngine determinism', () => {
  it('tokens depend only on the sequence history: chunking and batch neighbours change nothing', async () => {
    const alone = await generateAlone(promptTokens, 5);
    const e = await engine();
    // Same prompt in two chunks, on another slot and pages, next to an unrelated sequence.
    await e.step(plan([seq({ seqId: 7, slot: 2, tokens: promptTokens.slice(0, 11), pages: [5, 6], sample: false }), seq({ seqId: 8, slot: 1, tokens: [1, 2, 3], pages: [9] })], { reset: [2, 1] }));
    let r = await e.step(plan([seq({ seqId: 7, slot: 2, startPosition: 11, tokens: promptTokens.slice(11), pages: [5, 6, 7] })]));
    const got: number[] = [];
    let position = promptTokens.length;
    for (let i = 0; i < 5; i++) {
      const t = r.outputs[0]!.token;
      got.push(t);
      r = await e.step(plan([seq({ seqId: 7, slot: 2, startPosition: position++, tokens: [t], pages: [5, 6, 7], promptLength: 20 })]));
    }
    assert.deepEqual(got, alone);
    assert.ok(alone.every((t) => t >= 3 && t < 32000));
  });

  it('copySlot forks the state: the copy continues exactly like the original', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: promptTokens.slice(0, 16), pages: [0], sample: false })], { reset: [0] }));
    await e.copySlot(0, 3);
    const r = await e.step(plan([
      seq({ seqId: 1, slot: 0, startPosition: 16, tokens: promptTokens.slice(16), pages: [0, 1], promptLength: 20 }),
      seq({ seqId: 2, slot: 3, startPosition: 16, tokens: promptTokens.slice(16), pages: [0, 2], promptLength: 20 }),
    ]));
    assert.equal(r.outputs[0]!.token, r.outputs[1]!.token);
    assert.equal(r.outputs[0]!.token, (await generateAlone(promptTokens, 1))[0]);
  });

  it('a seed makes temperature sampling reproducible; bias and top-k steer it', async () => {
    const seeded = { ...GREEDY, temperature: 1, seed: 42 };
    assert.deepEqual(await generateAlone(promptTokens, 6, seeded), await generateAlone(promptTokens, 6, seeded));
    const other = await generateAlone(promptTokens, 6, { ...seeded, seed: 43 });
    assert.equal(other.length, 6);
    const greedy = await generateAlone(promptTokens, 1);
    assert.deepEqual(await generateAlone(promptTokens, 1, { ...seeded, topK: 1 }), greedy, 'top-k 1 is greedy');
    const banned = await generateAlone(promptTokens, 1, { ...GREEDY, logitBias: new Map([[greedy[0]!, -Infinity]]) });
    assert.notEqual(banned[0], greedy[0]);
    const forced = await generateAlone(promptTokens, 1, { ...GREEDY, logitBias: new Map([[12345, 100]]) });
    assert.deepEqual(forced, [12345]);
  });

  it('penalties push a repeated token down: repetition over the prompt, frequency over output only', async () => {
    const X = 12345;
    const history = [...promptTokens.slice(0, 10), X, ...promptTokens.slice(10)];
    const biased = { ...GREEDY, logitBias: new Map([[X, 25]]) };
    const next = async (sampling: SamplingParams, promptLength: number) => {
      const e = await engine();
      const r = await e.step(plan([seq({ seqId: 1, slot: 0, tokens: history, pages: [0, 1], sampling, promptLength })], { reset: [0] }));
      return r.outputs[0]!.token;
    };
    assert.equal(await next(biased, 21), X);
    assert.notEqual(await next({ ...biased, repetitionPenalty: 1000 }, 21), X);
    assert.equal(await next({ ...biased, frequencyPenalty: 20 }, 21), X, 'X is in the prompt: no frequency penalty');
    assert.notEqual(await next({ ...biased, frequencyPenalty: 20 }, 5), X, 'X is output: penalized');
    assert.notEqual(await next({ ...biased, presencePenalty: 20 }, 5), X);
  });

  it('eosProbability 1 makes eos the greedy choice', async () => {
    const e = await engine({ eosProbability: 1, eosTokenId: 2 });
    const r = await e.step(plan([seq({ seqId: 1, slot: 0, tokens: promptTokens, pages: [0, 1] })], { reset: [0] }));
    assert.equal(r.outputs[0]!.token, 2);
    assert.deepEqual(e.describe().eosTokenIds, [2]);
  });
});

describe('FakeEngine logprobs and logits', () => {
  it('returns valid token logprobs, sorted top-N, prompt logprobs and dense logits', async () => {
    const e = await engine({ vocabSize: 64 });
    const tokens = [4, 9, 20, 33, 50];
    const r = await e.step(plan([seq({ seqId: 1, slot: 0, tokens, pages: [0], sampling: { ...GREEDY, logprobs: 12 }, promptLogprobs: 3, returnLogits: true })], { reset: [0] }));
    const out = r.outputs[0]!;
    const lp = out.logprobs!;
    assert.equal(lp.tokenId, out.token);
    assert.equal(lp.top!.tokenIds.length, 12, 'more than the candidates: filled with background tokens');
    const top = [...lp.top!.logprobs];
    assert.deepEqual(top, [...top].sort((a, b) => b - a));
    assert.ok(top.every((x) => x <= 0));
    assert.equal(new Set(lp.top!.tokenIds).size, 12);
    assert.equal(out.promptLogprobs!.length, 4, 'positions 1..4');
    assert.deepEqual(out.promptLogprobs!.map((p) => p.tokenId), tokens.slice(1));
    const logits = out.logits!;
    assert.equal(logits.length, tokens.length * 64);
    // The last row's log-softmax matches the sampled token's logprob.
    const row = logits.subarray(4 * 64, 5 * 64);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    assert.ok(Math.abs(row[out.token]! - lse - lp.logprob) < 1e-4);
    assert.equal(out.token, row.indexOf(max));
  });

  it('prompt logprobs of a later chunk include its first token', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: promptTokens.slice(0, 8), pages: [0, 1], sample: false })], { reset: [0] }));
    const r = await e.step(plan([seq({ seqId: 1, slot: 0, startPosition: 8, tokens: promptTokens.slice(8), pages: [0, 1], promptLogprobs: 0 })]));
    assert.equal(r.outputs[0]!.promptLogprobs!.length, 12);
    assert.equal(r.outputs[0]!.promptLogprobs![0]!.top, null);
  });
});

describe('FakeEngine invariant checks', () => {
  it('slot used before reset', async () => {
    const e = await engine();
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })])), 'FAKE_SLOT_NOT_RESET');
  });

  it('slot used by two live sequences, and reset of a live slot', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })], { reset: [0] }));
    await rejectsWith(e.step(plan([seq({ seqId: 2, slot: 0, tokens: [5], pages: [1] })])), 'FAKE_SLOT_SHARED');
    const e2 = await engine();
    await e2.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })], { reset: [0] }));
    await rejectsWith(e2.step(plan([], { reset: [0] })), 'FAKE_RESET_LIVE_SLOT');
  });

  it('a released slot is dirty until reset; the release makes reuse legal', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })], { reset: [0] }));
    await rejectsWith(e.step(plan([seq({ seqId: 2, slot: 0, tokens: [5], pages: [1] })], { released: [1] })), 'FAKE_SLOT_NOT_RESET');
    const e2 = await engine();
    await e2.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })], { reset: [0] }));
    await e2.step(plan([seq({ seqId: 2, slot: 0, tokens: [5], pages: [0] })], { released: [1], reset: [0] }));
    assert.equal(e2.liveSequenceCount, 1);
  });

  it('startPosition must equal the tokens the slot consumed', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5, 6, 7], pages: [0] })], { reset: [0] }));
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, startPosition: 4, tokens: [8], pages: [0] })])), 'FAKE_BAD_POSITION');
  });

  it('a sequence may not change slot', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [0] })], { reset: [0, 1] }));
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 1, startPosition: 1, tokens: [8], pages: [0] })])), 'FAKE_SLOT_CHANGED');
  });

  it('page written by two live sequences', async () => {
    const e = await engine();
    await rejectsWith(
      e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5], pages: [3] }), seq({ seqId: 2, slot: 1, tokens: [6], pages: [3] })], { reset: [0, 1] })),
      'FAKE_PAGE_SHARED',
    );
  });

  it('page table too short, page out of range', async () => {
    const e = await engine();
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: promptTokens, pages: [0] })], { reset: [0] })), 'FAKE_PAGE_TABLE_SHORT');
    const e2 = await engine();
    await rejectsWith(e2.step(plan([seq({ seqId: 1, slot: 0, tokens: [1], pages: [99] })], { reset: [0] })), 'FAKE_BAD_PAGE');
  });

  it('a page read back with another sequence data (wrong page table)', async () => {
    const e = await engine();
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [5, 6], pages: [0] }), seq({ seqId: 2, slot: 1, tokens: [7, 8], pages: [1] })], { reset: [0, 1] }));
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, startPosition: 2, tokens: [9], pages: [1] })])), 'FAKE_PAGE_SHARED');
    const e2 = await engine();
    await e2.step(plan([seq({ seqId: 1, slot: 0, tokens: promptTokens.slice(0, 16), pages: [0] }), seq({ seqId: 2, slot: 1, tokens: promptTokens.slice(4), pages: [1] })], { reset: [0, 1] }));
    await rejectsWith(e2.step(plan([seq({ seqId: 1, slot: 0, startPosition: 16, tokens: [9], pages: [1, 2] })])), 'FAKE_PAGE_CORRUPT');
  });

  it('too many tokens or sequences in one step, duplicates, step order, empty chunks, bad tokens', async () => {
    const e = await engine({ maxTokensPerStep: 4, maxSequencesPerStep: 2 });
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: [1, 2, 3, 4, 5], pages: [0] })], { reset: [0] })), 'FAKE_TOO_MANY_TOKENS');
    await rejectsWith(
      e.step(plan([0, 1, 2].map((i) => seq({ seqId: i, slot: i, tokens: [1], pages: [i] })), { reset: [0, 1, 2] })),
      'FAKE_TOO_MANY_SEQUENCES',
    );
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: [1], pages: [0] }), seq({ seqId: 1, slot: 1, tokens: [1], pages: [1] })])), 'FAKE_DUPLICATE_SEQUENCE');
    await rejectsWith(e.step({ stepId: 0, sequences: [], resetSlots: NONE, releasedSeqIds: [] }), 'FAKE_STEP_ORDER');
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: [], pages: [0] })])), 'FAKE_EMPTY_CHUNK');
    await rejectsWith(e.step(plan([seq({ seqId: 1, slot: 0, tokens: [40000], pages: [0] })], { reset: [0] })), 'FAKE_BAD_TOKEN');
  });

  it('lifecycle: step before initCache, over-budget sizes, after close; failOnStep rejects', async () => {
    const fresh = new FakeEngine({ stateSlotBytes: 10, kvPageBytes: 1, cacheBudgetBytes: 100 });
    await rejectsWith(fresh.step(plan([])), 'FAKE_NOT_INITIALIZED');
    await rejectsWith(fresh.initCache({ slotCount: 10, pageCount: 1 }), 'FAKE_OVER_BUDGET');
    const e = await engine({ failOnStep: (p) => p.sequences.length === 0 });
    await rejectsWith(e.step(plan([])), 'FAKE_INJECTED');
    await e.close();
    await rejectsWith(e.step(plan([])), 'FAKE_CLOSED');
  });

  it('step never blocks the event loop: a timer set before the step fires before it resolves', async () => {
    const e = await engine({ stepLatencyMs: 5 });
    const order: string[] = [];
    setTimeout(() => order.push('timer'), 1);
    await e.step(plan([seq({ seqId: 1, slot: 0, tokens: [1], pages: [0] })], { reset: [0] }));
    order.push('step');
    assert.deepEqual(order, ['timer', 'step']);
  });
});

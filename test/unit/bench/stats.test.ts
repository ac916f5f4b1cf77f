import { test } from 'node:test';
import assert from 'node:assert/strict';
import { distribution, percentile, summarizeStreams } from '../../../src/bench/stats.js';
import type { StreamRecord } from '../../../src/bench/sse-client.js';

function record(overrides: Partial<StreamRecord>): StreamRecord {
  return {
    ok: true,
    status: 200,
    errorKind: null,
    errorMessage: null,
    startedAtMs: 0,
    ttftMs: 10,
    e2eMs: 40,
    chunkTimesMs: [10, 20, 30, 40],
    outputTokens: 4,
    promptTokens: 8,
    finishReason: 'length',
    ...overrides,
  };
}

test('percentiles interpolate between ranks like numpy', () => {
  const sorted = [1, 2, 3, 4];
  assert.equal(percentile(sorted, 0.5), 2.5);
  assert.equal(percentile(sorted, 0), 1);
  assert.equal(percentile(sorted, 1), 4);
  assert.ok(Math.abs(percentile(sorted, 0.9) - 3.7) < 1e-12);
  assert.ok(Number.isNaN(percentile([], 0.5)));
  const d = distribution([5, 1, 3]);
  assert.deepEqual({ count: d.count, mean: d.mean, p50: d.p50, max: d.max }, { count: 3, mean: 3, p50: 3, max: 5 });
});

test('TTFT, TPOT, ITL and throughput follow the vLLM definitions', () => {
  const records = [
    record({}),
    // 3 tokens in 2 chunks: TPOT uses tokens, ITL uses chunk gaps.
    record({ ttftMs: 20, e2eMs: 60, chunkTimesMs: [20, 60], outputTokens: 3, promptTokens: 12 }),
  ];
  const s = summarizeStreams(records, 2000);
  assert.equal(s.requestsOk, 2);
  assert.equal(s.requestsPerS, 1);
  assert.equal(s.outputTokensTotal, 7);
  assert.equal(s.outputTokensPerS, 3.5);
  assert.equal(s.promptTokensMean, 10);
  assert.equal(s.totalTokensPerS, (7 + 20) / 2);
  assert.deepEqual([s.ttftMs.p50, s.ttftMs.max], [15, 20]);
  // (40 - 10) / 3 = 10 and (60 - 20) / 2 = 20
  assert.equal(s.tpotMs.mean, 15);
  // gaps 10, 10, 10 and 40
  assert.equal(s.itlMs.count, 4);
  assert.equal(s.itlMs.max, 40);
  assert.equal(s.e2eMs.p50, 50);
  assert.equal(s.wallUsPerOutputToken, (2000 * 1000) / 7);
  assert.deepEqual(s.finishReasons, { length: 2 });
});

test('failed requests are counted by kind and left out of latencies', () => {
  const records = [
    record({}),
    record({ ok: false, status: 429, errorKind: '429', errorMessage: 'busy', ttftMs: null, chunkTimesMs: [], outputTokens: 0 }),
    record({ ok: false, status: 429, errorKind: '429', errorMessage: 'busy again', ttftMs: null, chunkTimesMs: [], outputTokens: 0 }),
    record({ ok: false, status: 200, errorKind: 'stream-error', errorMessage: 'boom', e2eMs: 9999 }),
  ];
  const s = summarizeStreams(records, 1000);
  assert.equal(s.requestsTotal, 4);
  assert.equal(s.requestsOk, 1);
  assert.equal(s.requestsFailed, 3);
  assert.deepEqual(s.errorsByKind, { '429': 2, 'stream-error': 1 });
  assert.deepEqual(s.errorSamples, { '429': 'busy', 'stream-error': 'boom' });
  assert.equal(s.e2eMs.max, 40);
  assert.equal(s.outputTokensTotal, 4);
});

test('a phase where everything failed has NaN rates, not exceptions', () => {
  const s = summarizeStreams([record({ ok: false, errorKind: 'network', status: null })], 100);
  assert.equal(s.requestsOk, 0);
  assert.ok(Number.isNaN(s.ttftMs.p50));
  assert.ok(Number.isNaN(s.wallUsPerOutputToken));
  assert.equal(s.outputTokensPerS, 0);
});

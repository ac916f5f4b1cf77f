import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNumber, renderTable, tableCells } from '../../../src/bench/report-table.js';
import { niceStep, renderLinePlot } from '../../../src/bench/svg-plot.js';
import { summarizeStreams, type HttpSummary } from '../../../src/bench/stats.js';
import type { StreamRecord } from '../../../src/bench/sse-client.js';

function streams(ttftMs: number, count: number, durationMs: number) {
  const records: StreamRecord[] = Array.from({ length: count }, () => ({
    ok: true, status: 200, errorKind: null, errorMessage: null, startedAtMs: 0,
    ttftMs, e2eMs: ttftMs + 30, chunkTimesMs: [ttftMs, ttftMs + 10, ttftMs + 20, ttftMs + 30], outputTokens: 4, promptTokens: 5, finishReason: 'length',
  }));
  return summarizeStreams(records, durationMs);
}

const http: HttpSummary = {
  kind: 'http', requestsTotal: 110, requestsOk: 100, requestsFailed: 10, durationMs: 1000, requestsPerS: 100,
  latencyMs: { mean: 5, p50: 4, p90: 8, p99: 12, max: 20 }, connections: 4, errorsByKind: { '503': 7, network: 3 },
};

test('the table has a column per phase and the metrics that apply', () => {
  const cells = tableCells([
    { name: 'stream', ours: streams(10, 4, 1000), baseline: null },
    { name: 'http', ours: http, baseline: null },
  ]);
  assert.deepEqual(cells[0], ['metric', 'stream', 'http']);
  const row = (label: string) => cells.find((r) => r[0] === label);
  assert.deepEqual(row('requests/s'), ['requests/s', '4.00', '100']);
  assert.deepEqual(row('TTFT p50 ms'), ['TTFT p50 ms', '10.0', '']);
  assert.deepEqual(row('E2E p99 ms'), ['E2E p99 ms', '40.0', '12.0']);
  assert.deepEqual(row('errors'), ['errors', '0', '503: 7, network: 3']);
  assert.deepEqual(row('requests ok / sent'), ['requests ok / sent', '4 / 4', '100 / 110']);
});

test('speedup is > 1 when ours is better, whichever direction is better', () => {
  const cells = tableCells([{ name: 'p', ours: streams(10, 8, 1000), baseline: streams(20, 4, 1000) }], 'hf');
  assert.deepEqual(cells[0], ['metric', 'p', 'p hf', 'speedup']);
  const row = (label: string) => cells.find((r) => r[0] === label);
  assert.equal(row('requests/s')?.[3], '2.00x'); // 8/s vs 4/s
  assert.equal(row('TTFT p50 ms')?.[3], '2.00x'); // 10 ms vs 20 ms
  assert.equal(row('output tokens (mean)')?.[3], '');
});

test('the rendered table is an aligned Markdown table', () => {
  const text = renderTable([
    ['metric', 'a'],
    ['x', '1.00'],
    ['longer', '22.0'],
  ]);
  const lines = text.split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[1] ?? '', /^\|:-+\|-+:\|$/);
  assert.equal(new Set(lines.map((l) => l.length)).size, 1);
  assert.equal(formatNumber(Number.NaN), '-');
  assert.equal(formatNumber(1234.5), '1235');
  assert.equal(formatNumber(0.01234), '0.0123');
});

test('plot ticks are 1/2/5 steps and the SVG has one line per series', () => {
  assert.equal(niceStep(100), 20);
  assert.equal(niceStep(7), 2);
  assert.equal(niceStep(0.3), 0.1);
  assert.equal(niceStep(0), 1);
  const svg = renderLinePlot({
    title: 'a < b & c',
    subtitle: 'on "fake"',
    xLabel: 'x',
    yLabel: 'y',
    series: [
      { name: 'one', color: '#000', dashed: false, points: [{ x: 1, y: 2, label: '1/s' }, { x: 2, y: 3, label: '2/s' }] },
      { name: 'two', color: '#f00', dashed: true, points: [{ x: 1, y: Number.NaN, label: 'n' }, { x: 3, y: 9, label: '3/s' }, { x: 4, y: 12, label: '4/s' }] },
    ],
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal(svg.match(/<polyline /g)?.length, 2);
  assert.equal(svg.match(/<circle /g)?.length, 4); // the NaN point is dropped
  assert.match(svg, /a &lt; b &amp; c/);
  assert.match(svg, /on &quot;fake&quot;/);
  assert.match(svg, /stroke-dasharray/);
  assert.doesNotMatch(svg, /NaN/);
});

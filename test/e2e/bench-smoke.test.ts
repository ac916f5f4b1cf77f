// The CI smoke run of the benchmark: `bench --workload smoke --device fake` starts the real server
// (src/main.ts, fake engine) as a child process, drives it and writes the JSON result. Checks that
// the harness works end to end and the result has its fields; no timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const DISTRIBUTION_FIELDS = ['count', 'mean', 'p50', 'p90', 'p99', 'max'];
const STREAM_FIELDS = [
  'requestsTotal', 'requestsOk', 'requestsFailed', 'durationMs', 'requestsPerS', 'outputTokensPerS', 'totalTokensPerS',
  'promptTokensMean', 'outputTokensMean', 'outputTokensTotal', 'ttftMs', 'tpotMs', 'itlMs', 'e2eMs',
  'wallUsPerOutputToken', 'errorsByKind', 'finishReasons',
];

test('bench smoke workload against the real server on the fake engine', { timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'smoke.json');
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', 'src/bench/cli.ts', '--workload', 'smoke', '--device', 'fake', '--fake-step-latency-ms', '0', '--out', out, '--ready-timeout-s', '180'],
    { timeout: 230_000 },
  );
  assert.match(stdout, /\| metric +\| +stream \| +http \|/);

  const result = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(result.schemaVersion, 1);
  assert.equal(result.workload, 'smoke');
  assert.equal(result.server.startedByBench, true);
  assert.match(result.server.launch, /--device fake/);
  assert.equal(typeof result.server.model, 'string');
  assert.equal(result.baseline, null);
  assert.equal(typeof result.table, 'string');
  for (const key of ['node', 'platform', 'cpuCount']) assert.ok(key in result.environment, key);

  const [stream, http] = result.phases;
  assert.equal(stream.kind, 'stream');
  for (const field of STREAM_FIELDS) assert.ok(field in stream.ours, `stream summary lacks ${field}`);
  for (const dist of ['ttftMs', 'tpotMs', 'itlMs', 'e2eMs']) {
    for (const field of DISTRIBUTION_FIELDS) assert.ok(field in stream.ours[dist], `${dist} lacks ${field}`);
  }
  assert.equal(stream.ours.requestsTotal, 8);
  assert.equal(stream.ours.requestsOk, 8, JSON.stringify(stream.ours.errorSamples));
  // ignore_eos: every request produced exactly max_tokens tokens, counted from usage.
  assert.equal(stream.ours.outputTokensTotal, 8 * 8);
  assert.ok(stream.ours.promptTokensMean > 0);
  assert.deepEqual(stream.ours.finishReasons, { length: 8 });

  assert.equal(http.kind, 'http');
  for (const field of ['requestsTotal', 'requestsOk', 'requestsPerS', 'latencyMs', 'errorsByKind']) assert.ok(field in http.ours, `http summary lacks ${field}`);
  assert.equal(http.ours.requestsOk, 16);
  assert.deepEqual(http.ours.errorsByKind, {});
});

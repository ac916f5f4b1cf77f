// The bench command end to end against stand-in servers (the real server's smoke run is
// test/e2e/bench-smoke.test.ts): flags in, table on stdout, JSON and SVG files out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { findFreePort } from '../../../src/bench/server-process.js';
import { getOnce } from '../../../src/bench/sse-client.js';
import { startTinyServer } from './tiny-openai-server.js';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', 'src/bench/cli.ts'];

test('smoke against a running server: table printed, JSON written with both phases', async (t) => {
  const server = await startTinyServer({ modelId: 'served-name' });
  const dir = mkdtempSync(join(tmpdir(), 'bench-cli-'));
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const out = join(dir, 'smoke.json');
  const { stdout } = await run(process.execPath, [...CLI, '--workload', 'smoke', '--url', server.baseUrl, '--out', out]);
  assert.match(stdout, /\| metric +\| +stream \| +http \|/);
  assert.match(stdout, /TTFT p99 ms/);
  const result = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(result.workload, 'smoke');
  assert.equal(result.server.model, 'served-name');
  assert.equal(result.server.startedByBench, false);
  assert.deepEqual(result.phases.map((p: { name: string }) => p.name), ['stream', 'http']);
  const [stream, http] = result.phases;
  assert.equal(stream.ours.requestsOk, 8);
  assert.equal(stream.ours.outputTokensMean, 8);
  assert.equal(http.ours.requestsOk, 16);
  // 8 measured streams + 16 autocannon requests, no warm-up for smoke; ignore_eos sent.
  assert.equal(server.bodies.length, 24);
  assert.ok(server.bodies.every((b) => b.ignore_eos === true && b.model === 'served-name'));
});

test('rate sweep with a baseline: same prompts to both, speedup column, SVG plot', async (t) => {
  const ours = await startTinyServer();
  const baseline = await startTinyServer({ modelId: 'other' });
  const dir = mkdtempSync(join(tmpdir(), 'bench-cli-'));
  t.after(async () => {
    await ours.close();
    await baseline.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const out = join(dir, 'sweep.json');
  const { stdout } = await run(process.execPath, [
    ...CLI, '--workload', 'rate-sweep', '--url', ours.baseUrl, '--baseline-url', baseline.baseUrl, '--baseline-name', 'hf',
    '--rates', '200,inf', '--num-requests', '6', '--warmup', '0', '--max-tokens', '3', '--seed', '4', '--out', out,
  ]);
  assert.match(stdout, /rate=200 hf/);
  assert.match(stdout, /speedup/);
  const result = JSON.parse(readFileSync(out, 'utf8'));
  assert.deepEqual(result.phases.map((p: { ratePerS: string }) => p.ratePerS), ['200', 'inf']);
  assert.equal(result.baseline.model, 'other');
  assert.equal(result.params.rates[1], 'inf');
  assert.equal(result.plotSvgPath, join(dir, 'sweep.svg'));
  const svg = readFileSync(join(dir, 'sweep.svg'), 'utf8');
  assert.match(svg, /TTFT p50 \(hf\)/);
  // The same 12 prompts (6 per rate) went to both servers.
  const prompts = (s: typeof ours) => s.bodies.map((b) => JSON.stringify(b.messages));
  assert.equal(ours.bodies.length, 12);
  assert.deepEqual(prompts(ours).sort(), prompts(baseline).sort());
});

test('bad flags exit 2 with the usage text; an unreachable server exits 1', async () => {
  await assert.rejects(run(process.execPath, [...CLI, '--workload', 'nope']), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr, /unknown workload/);
    assert.match(err.stderr, /Usage: npm run bench/);
    return true;
  });
  const dir = mkdtempSync(join(tmpdir(), 'bench-cli-'));
  const out = join(dir, 'x.json');
  await assert.rejects(run(process.execPath, [...CLI, '--workload', 'smoke', '--url', 'http://127.0.0.1:9', '--out', out]), (err: { code: number }) => {
    assert.equal(err.code, 1);
    return true;
  });
  assert.equal(existsSync(out), false);
  rmSync(dir, { recursive: true, force: true });
});

test('SIGTERM during a run stops the servers the bench started', async (t) => {
  const ours = await startTinyServer();
  t.after(() => ours.close());
  const port = await findFreePort();
  const baselineUrl = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [
    ...CLI, '--workload', 'rate-sweep', '--url', ours.baseUrl, '--rates', '0.2', '--num-requests', '50', '--warmup', '0',
    '--baseline-cmd', `${JSON.stringify(process.execPath)} --import tsx test/unit/bench/tiny-openai-server-main.ts ${port}`,
    '--baseline-url', baselineUrl, '--out', join(tmpdir(), `never-written-${port}.json`),
  ], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Wait until the baseline is up and ours is being measured.
  while (ours.bodies.length === 0) await sleep(100);
  assert.equal((await getOnce(`${baselineUrl}/health`)).status, 200);
  child.kill('SIGTERM');
  assert.equal(await exited, 143);
  await assert.rejects(getOnce(`${baselineUrl}/health`, {}, 1000));
});

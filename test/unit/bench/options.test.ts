import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBenchArgs, parseRates, UsageError } from '../../../src/bench/options.js';

const NOW = new Date('2026-01-02T03:04:05Z');

test('a workload brings its defaults and the output path gets a timestamp', () => {
  const o = parseBenchArgs(['--workload', 'chat-short'], {}, NOW);
  assert.ok(o);
  assert.equal(o.params.maxTokens, 128);
  assert.equal(o.params.ignoreEos, true);
  assert.equal(o.outPath, 'bench-results/chat-short-20260102-030405.json');
  assert.equal(o.svgPath, null);
  assert.equal(o.url, null);
  assert.equal(o.baseline, null);
  assert.equal(o.seed, 0);
  assert.equal(o.requestIdleTimeoutMs, 300_000);
  assert.equal(parseBenchArgs(['--workload', 'smoke', '--request-timeout-s', '2'], {}, NOW)?.requestIdleTimeoutMs, 2000);
});

test('flags override the defaults', () => {
  const o = parseBenchArgs(
    ['--workload', 'rate-sweep', '--rates', '1,2.5,inf', '--burstiness', '0.5', '--max-tokens', '7', '--seed', '9', '--out', 'x/r.json', '--no-ignore-eos', '--endpoint', 'completions', '--device', 'fake', '--fake-step-latency-ms', '0', '--server-args', ' --max-num-seqs  8 '],
    {},
    NOW,
  );
  assert.ok(o);
  assert.deepEqual(o.params.rates, [1, 2.5, Infinity]);
  assert.equal(o.params.burstiness, 0.5);
  assert.equal(o.params.maxTokens, 7);
  assert.equal(o.params.ignoreEos, false);
  assert.equal(o.params.endpoint, 'completions');
  assert.equal(o.seed, 9);
  assert.equal(o.svgPath, 'x/r.svg');
  assert.deepEqual(o.serverArgs, ['--max-num-seqs', '8', '--fake-step-latency-ms', '0']);
  assert.equal(o.device, 'fake');
});

test('defaults objects are not shared between parses', () => {
  const a = parseBenchArgs(['--workload', 'smoke', '--connections', '9'], {}, NOW);
  const b = parseBenchArgs(['--workload', 'smoke'], {}, NOW);
  assert.equal(a?.params.http?.connections, 9);
  assert.equal(b?.params.http?.connections, 4);
});

test('http flags pick amount or duration', () => {
  const o = parseBenchArgs(['--workload', 'http-overhead', '--http-requests', '500'], {}, NOW);
  assert.deepEqual(o?.params.http, { connections: 32, durationS: null, amount: 500, maxTokens: 4 });
  const d = parseBenchArgs(['--workload', 'smoke', '--duration-s', '3'], {}, NOW);
  assert.equal(d?.params.http?.durationS, 3);
  assert.equal(d?.params.http?.amount, null);
});

test('baseline flags and the api key from env', () => {
  const o = parseBenchArgs(['--workload', 'smoke', '--url', 'http://h:1', '--baseline-url', 'http://h:2', '--baseline-cmd', 'vllm serve m', '--baseline-name', 'vllm'], { ZAMBA2_BENCH_API_KEY: 'k' }, NOW);
  assert.deepEqual(o?.baseline, { name: 'vllm', url: 'http://h:2', command: 'vllm serve m', model: null, apiKey: null });
  assert.equal(o?.apiKey, 'k');
});

test('bad flags are usage errors', () => {
  const bad: string[][] = [
    [],
    ['--workload', 'nope'],
    ['--workload', 'smoke', '--concurrency', '0'],
    ['--workload', 'smoke', '--rates', '1,2'],
    ['--workload', 'rate-sweep', '--rates', '0'],
    ['--workload', 'chat-short', '--connections', '3'],
    ['--workload', 'smoke', '--url', 'http://x', '--device', 'fake'],
    ['--workload', 'smoke', '--baseline-cmd', 'x'],
    ['--workload', 'smoke', '--endpoint', 'embeddings'],
  ];
  for (const argv of bad) assert.throws(() => parseBenchArgs(argv, {}, NOW), UsageError, argv.join(' '));
  assert.throws(() => parseBenchArgs(['--workload', 'smoke', '--bogus'], {}, NOW), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
  assert.equal(parseBenchArgs(['--help'], {}, NOW), null);
  assert.throws(() => parseRates(' , '), UsageError);
});

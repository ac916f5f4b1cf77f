/**
 * Fault: SIGTERM under load, on the real executable (src/main.ts as a child process, fake engine
 * with 20 ms steps). With a short grace period: /ready turns 503 and new requests get 503 at once,
 * short streams finish, long ones are cut with an error event + [DONE], non-streaming ones get
 * 503; nothing hangs; the process exits 0. With a long grace period every stream finishes.
 * FAULT_SOAK=1: 200 streams (the fake engine has 256 state slots).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { makeModelDir } from '../helpers/tokenizer-fixture.js';
import { MODEL, countStatuses, size, ssePayloads } from './fault-server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STREAMS = size(50, 4);
/** Past this a request counts as hung (the longest legitimate one takes about the grace period). */
const HANG_LIMIT_MS = 30_000;
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZAMBA2_')));

interface Child {
  process: ChildProcess;
  url: string;
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

async function startChild(modelDir: string, graceSeconds: number): Promise<Child> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', '--device', 'fake', '--model', modelDir, '--served-model-name', MODEL, '--port', '0', '--host', '127.0.0.1',
      '--fake-step-latency-ms', '20', '--max-num-seqs', '256', '--max-waiting', '10000', '--shutdown-grace-seconds', String(graceSeconds)],
    { cwd: ROOT, env: cleanEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const logs: Array<Record<string, unknown>> = [];
  let resolveUrl!: (url: string) => void;
  const ready = new Promise<string>((r) => (resolveUrl = r));
  // Keep reading stdout to the end, or a full pipe would block the child's logging.
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'zamba2-serve ready') resolveUrl(entry.url as string);
    } catch {
      logs.push({ raw: line });
    }
  });
  child.stderr!.resume();
  const url = await Promise.race([ready, exited.then((code) => Promise.reject(new Error(`server exited with ${code} before ready`)))]);
  return { process: child, url, logs, exited };
}

interface StreamOutcome {
  kind: 'completed' | 'cut' | 'broken' | 'hung';
  detail: string;
}

/** Streams a request; `firstChunk` resolves when its first data event arrives. */
function streamRequest(url: string, i: number, maxTokens: number, onFirstChunk: () => void): Promise<StreamOutcome> {
  const chat = i % 2 === 0;
  const body = chat
    ? { model: MODEL, messages: [{ role: 'user', content: `stream ${i}` }], max_tokens: maxTokens, ignore_eos: true, stream: true }
    : { model: MODEL, prompt: `stream ${i}`, max_tokens: maxTokens, ignore_eos: true, stream: true };
  return (async (): Promise<StreamOutcome> => {
    try {
      const res = await fetch(`${url}${chat ? '/v1/chat/completions' : '/v1/completions'}`, {
        method: 'POST',
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(HANG_LIMIT_MS),
      });
      if (res.status !== 200) return { kind: 'broken', detail: `status ${res.status}` };
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let raw = '';
      let notified = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        raw += decoder.decode(value, { stream: true });
        if (!notified && raw.includes('data: ')) {
          notified = true;
          onFirstChunk();
        }
      }
      if (!raw.endsWith('data: [DONE]\n\n')) return { kind: 'broken', detail: `no [DONE]: ${raw.slice(-120)}` };
      const payloads = ssePayloads(raw);
      const error = payloads.find((p) => typeof p === 'object' && p !== null && 'error' in p) as { error: { code: string } } | undefined;
      if (error) return error.error.code === 'shutting_down' ? { kind: 'cut', detail: '' } : { kind: 'broken', detail: `error ${error.error.code}` };
      return /"finish_reason":"length"/.test(raw) ? { kind: 'completed', detail: '' } : { kind: 'broken', detail: 'no finish_reason' };
    } catch (err) {
      const name = (err as Error).name;
      return { kind: name === 'TimeoutError' ? 'hung' : 'broken', detail: `${name}: ${(err as Error).message}` };
    }
  })();
}

async function plainRequest(url: string, i: number): Promise<number | string> {
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, prompt: `plain ${i}`, max_tokens: 2000, ignore_eos: true }),
      signal: AbortSignal.timeout(HANG_LIMIT_MS),
    });
    const body = (await res.json()) as { error?: { code: string } };
    return res.status === 503 ? `503 ${body.error?.code}` : res.status;
  } catch (err) {
    return (err as Error).name === 'TimeoutError' ? 'hung' : `error ${(err as Error).message}`;
  }
}

async function waitExit(child: Child): Promise<number | null | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), HANG_LIMIT_MS)));
  const code = await Promise.race([child.exited, limit]);
  clearTimeout(timer);
  if (code === 'hung') child.process.kill('SIGKILL');
  return code;
}

test(`SIGTERM with ${STREAMS} streams running and a 1.5 s grace: short ones finish, long ones are cut cleanly, exit 0`, async (t) => {
  const model = makeModelDir();
  let child: Child | null = null;
  try {
    child = await startChild(model.dir, 1.5);
    const url = child.url;
    let started = 0;
    let allStarted!: () => void;
    const everyStreamStarted = new Promise<void>((r) => (allStarted = r));
    const onFirst = () => {
      if (++started === STREAMS) allStarted();
    };
    // Ten long non-streaming requests first, running before the streams start (the scheduler's
    // gauge, read through /metrics), so all of them are in flight at SIGTERM.
    const plain = Array.from({ length: 10 }, (_, i) => plainRequest(url, i));
    for (let polls = 0; ; polls++) {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      if (Number(/^zamba2_num_requests_running (\d+)/m.exec(metrics)?.[1]) === 10) break;
      assert.ok(polls < 2000, 'the non-streaming requests never all ran');
      await new Promise((r) => setTimeout(r, 5));
    }
    // Half finish well inside the grace period (10 tokens ≈ 0.2 s), half could not (2,000 ≈ 40 s).
    const streams = Array.from({ length: STREAMS }, (_, i) => streamRequest(url, i, i % 2 === 0 ? 10 : 2000, onFirst));
    await everyStreamStarted;
    child.process.kill('SIGTERM');
    // Readiness goes false at once, and a new generation request is refused while running ones drain.
    let readyStatus = 0;
    for (let i = 0; i < 100 && readyStatus !== 503; i++) {
      readyStatus = (await fetch(`${url}/ready`)).status;
      if (readyStatus !== 503) await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(readyStatus, 503);
    const late = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL, prompt: 'late', max_tokens: 2 }) });
    assert.equal(late.status, 503);
    assert.equal(((await late.json()) as { error: { code: string } }).error.code, 'shutting_down');

    const outcomes = await Promise.all(streams);
    const plainOutcomes = await Promise.all(plain);
    const code = await waitExit(child);
    const streamCounts = countStatuses(outcomes.map((o) => o.kind));
    t.diagnostic(`SIGTERM, grace 1.5 s: ${STREAMS} streams → ${JSON.stringify(streamCounts)}; 10 non-streaming → ${JSON.stringify(countStatuses(plainOutcomes))}; new request during drain → 503 shutting_down; exit code ${code}`);
    const summary = child.logs.find((l) => l.msg === 'shutdown complete');
    t.diagnostic(`server log: ${JSON.stringify(summary)}`);

    assert.deepEqual(outcomes.filter((o) => o.kind === 'broken' || o.kind === 'hung'), []);
    for (let i = 0; i < STREAMS; i++) assert.equal(outcomes[i]!.kind, i % 2 === 0 ? 'completed' : 'cut', `stream ${i}`);
    assert.deepEqual(countStatuses(plainOutcomes), { '503 shutting_down': 10 });
    assert.equal(code, 0);
    assert.equal(summary?.cut, STREAMS / 2 + 10);
  } finally {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL');
    model.cleanup();
  }
});

test(`SIGTERM with ${STREAMS} short streams and a long grace: every stream finishes, exit 0`, async (t) => {
  const model = makeModelDir();
  let child: Child | null = null;
  try {
    child = await startChild(model.dir, 20);
    let started = 0;
    let allStarted!: () => void;
    const everyStreamStarted = new Promise<void>((r) => (allStarted = r));
    const streams = Array.from({ length: STREAMS }, (_, i) =>
      streamRequest(child!.url, i, 30, () => {
        if (++started === STREAMS) allStarted();
      }),
    );
    await everyStreamStarted;
    child.process.kill('SIGTERM');
    const outcomes = await Promise.all(streams);
    const code = await waitExit(child);
    t.diagnostic(`SIGTERM, grace 20 s: ${STREAMS} streams → ${JSON.stringify(countStatuses(outcomes.map((o) => o.kind)))}; exit code ${code}`);
    assert.deepEqual(countStatuses(outcomes.map((o) => o.kind)), { completed: STREAMS });
    assert.equal(code, 0);
    assert.equal(child.logs.find((l) => l.msg === 'shutdown complete')?.cut, 0);
  } finally {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL');
    model.cleanup();
  }
});

/**
 * The zamba2-serve executable as a user runs it: start-up on a free port, a request, SIGTERM →
 * graceful exit 0; bad options stop start-up with a message naming the option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { makeModelDir } from '../helpers/tokenizer-fixture.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = ['--import', 'tsx', 'src/main.ts'];
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZAMBA2_')));

function runSync(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [...MAIN, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...cleanEnv, ...env } });
}

test('serves with --device fake, answers, and exits 0 on SIGTERM', async () => {
  const model = makeModelDir();
  const child = spawn(process.execPath, [...MAIN, '--device', 'fake', '--model', model.dir, '--port', '0', '--host', '127.0.0.1'], {
    cwd: ROOT,
    env: cleanEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let url: string | null = null;
    for await (const line of createInterface({ input: child.stdout! })) {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'zamba2-serve ready') {
        url = entry.url!;
        break;
      }
    }
    assert.ok(url, 'server never became ready');
    assert.equal((await fetch(`${url}/health`)).status, 200);
    // curl -d style: no JSON content type.
    const res = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Hi', max_tokens: 3 }) });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { object: string }).object, 'text_completion');
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    model.cleanup();
  }
});

test('a bad option stops start-up naming the option', () => {
  const flag = runSync(['--max-num-seqs', 'lots']);
  assert.equal(flag.status, 1);
  assert.match(flag.stderr, /--max-num-seqs/);
  const env = runSync([], { ZAMBA2_DEVICE: 'tpu' });
  assert.equal(env.status, 1);
  assert.match(env.stderr, /ZAMBA2_DEVICE/);
  const unknown = runSync(['--no-such-flag']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /no-such-flag/);
});

test('--help lists every option; cuda without the addon fails start-up cleanly', () => {
  const help = runSync(['--help']);
  assert.equal(help.status, 0);
  for (const flag of ['--model', '--device', '--port', '--max-num-seqs', '--max-model-len', '--api-key', '--config', 'ZAMBA2_PORT']) {
    assert.ok(help.stdout.includes(flag), `help lacks ${flag}`);
  }
  const model = makeModelDir();
  try {
    const cuda = runSync(['--device', 'cuda', '--model', model.dir, '--port', '0', '--log-level', 'silent']);
    // Either the CUDA engine is built and this machine has no GPU / no weights, or it is not built:
    // start-up fails with one clear line, never a crash with a stack trace.
    assert.equal(cuda.status, 1);
    assert.match(cuda.stderr, /^zamba2-serve: cannot start: /);
    assert.ok(!/\n\s+at /.test(cuda.stderr), cuda.stderr);
  } finally {
    model.cleanup();
  }
});

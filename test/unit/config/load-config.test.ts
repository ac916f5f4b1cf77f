import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, PACKAGE_ROOT, loadConfig, servedModelId } from '../../../src/config/load-config.js';
import { envName, flagName } from '../../../src/config/schema.js';

function withTempDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'zamba2-config-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('defaults: the bundled model on the CPU on port 8000', () => {
  const config = loadConfig();
  assert.equal(config.device, 'cpu');
  assert.equal(config.port, 8000);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.model, join(PACKAGE_ROOT, 'models'));
  assert.equal(config.logRequests, false);
  assert.deepEqual(config.apiKey, []);
});

test('precedence: defaults < config file < env < CLI', () => {
  withTempDir((dir) => {
    const file = join(dir, 'server.yaml');
    writeFileSync(file, 'port: 9001\nmax-num-seqs: 3\nmax_model_len: 512\nlogLevel: warn\n');
    const fromFile = loadConfig({ configFile: file });
    assert.equal(fromFile.port, 9001);
    assert.equal(fromFile.maxNumSeqs, 3);
    assert.equal(fromFile.maxModelLen, 512);
    const fromEnv = loadConfig({ configFile: file, env: { ZAMBA2_PORT: '9002', ZAMBA2_API_KEY: 'a,b' } });
    assert.equal(fromEnv.port, 9002);
    assert.deepEqual(fromEnv.apiKey, ['a', 'b']);
    const fromCli = loadConfig({ configFile: file, env: { ZAMBA2_PORT: '9002' }, cli: { port: '9003', device: 'fake', logRequests: true } });
    assert.equal(fromCli.port, 9003);
    assert.equal(fromCli.device, 'fake');
    assert.equal(fromCli.logRequests, true);
    assert.equal(fromCli.maxNumSeqs, 3);
  });
});

test('JSON config files work too', () => {
  withTempDir((dir) => {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ apiKey: 'single', device: 'fake' }));
    const config = loadConfig({ configFile: file });
    assert.deepEqual(config.apiKey, ['single']);
    assert.equal(config.device, 'fake');
  });
});

test('a bad value names the option and its source', () => {
  assert.throws(() => loadConfig({ cli: { maxNumSeqs: 'abc' } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /--max-num-seqs/);
    return true;
  });
  assert.throws(() => loadConfig({ env: { ZAMBA2_DEVICE: 'tpu' } }), /device \(ZAMBA2_DEVICE\)/);
  assert.throws(() => loadConfig({ cli: { port: '70000' } }), /port \(--port\)/);
  assert.throws(() => loadConfig({ cli: { cacheFraction: '0' } }), /cacheFraction/);
  assert.throws(() => loadConfig({ env: { ZAMBA2_LOG_REQUESTS: 'maybe' } }), /ZAMBA2_LOG_REQUESTS/);
  withTempDir((dir) => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'maxNumSeqs: -1\n');
    assert.throws(() => loadConfig({ configFile: file }), /maxNumSeqs \("maxNumSeqs" in .*bad\.yaml\)/);
    writeFileSync(file, 'nonsense: 1\n');
    assert.throws(() => loadConfig({ configFile: file }), /unknown option "nonsense"/);
  });
  assert.throws(() => loadConfig({ configFile: '/nonexistent/zamba2.yaml' }), /cannot read config file/);
});

test('names: flags and env vars derive from the option', () => {
  assert.equal(flagName('maxNumBatchedTokens'), 'max-num-batched-tokens');
  assert.equal(envName('maxNumBatchedTokens'), 'ZAMBA2_MAX_NUM_BATCHED_TOKENS');
});

test('served model id: explicit name, hub id as given, else folder name', () => {
  assert.equal(servedModelId({ model: '/m/Zamba2-1.2B', servedModelName: 'z' }), 'z');
  assert.equal(servedModelId({ model: 'Zyphra/Zamba2-1.2B-instruct', servedModelName: null }), 'Zyphra/Zamba2-1.2B-instruct');
  assert.equal(servedModelId({ model: '/m/Zamba2-1.2B/', servedModelName: null }), 'Zamba2-1.2B');
  assert.equal(servedModelId(loadConfig()), 'zamba2-demo');
});

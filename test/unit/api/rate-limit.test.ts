/**
 * Rate limits (@fastify/rate-limit) through app.inject: per API key when keys are on, per client
 * address when they are off; 429 with Retry-After and an OpenAI-style body; health, readiness and
 * metrics never limited; a bad key is 401, not counted. API keys from a file and ZAMBA2_API_KEYS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError } from '../../../src/config/load-config.js';
import { buildTestApp } from '../../helpers/build-test-app.js';

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

test('off by default: many requests from one client all pass', async () => {
  const { app, config } = buildTestApp();
  assert.equal(config.rateLimitPerMinute, 0);
  for (let i = 0; i < 30; i++) assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 200);
});

test('per API key: the fourth request of a key in a minute gets 429 with Retry-After; other keys and open routes are unaffected', async () => {
  const { app } = buildTestApp({ config: { apiKey: ['key-a', 'key-b'], rateLimitPerMinute: 3 } });
  for (let i = 0; i < 3; i++) {
    const ok = await app.inject({ method: 'GET', url: '/v1/models', headers: auth('key-a') });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.headers['x-ratelimit-remaining'], String(2 - i));
  }
  const limited = await app.inject({ method: 'POST', url: '/v1/completions', headers: auth('key-a'), payload: { prompt: 'hi', max_tokens: 1 } });
  assert.equal(limited.statusCode, 429);
  const retryAfter = Number(limited.headers['retry-after']);
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${limited.headers['retry-after']}`);
  assert.deepEqual(Object.keys(limited.json().error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(limited.json().error.type, 'rate_limit_error');
  assert.equal(limited.json().error.code, 'rate_limit_exceeded');
  assert.match(limited.json().error.message, /3 requests per minute/);

  // Another key has its own bucket.
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: auth('key-b') })).statusCode, 200);
  // A wrong key is refused by auth (401), before any bucket.
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: auth('key-c') })).statusCode, 401);
  // Probes and scrapes stay open, however often they come.
  for (let i = 0; i < 5; i++) {
    for (const url of ['/health', '/ready', '/metrics']) assert.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url);
  }
});

test('without API keys the bucket is the client address', async () => {
  const { app } = buildTestApp({ config: { rateLimitPerMinute: 2 } });
  const from = (remoteAddress: string) => app.inject({ method: 'GET', url: '/v1/models', remoteAddress });
  assert.equal((await from('10.0.0.1')).statusCode, 200);
  assert.equal((await from('10.0.0.1')).statusCode, 200);
  assert.equal((await from('10.0.0.1')).statusCode, 429);
  assert.equal((await from('10.0.0.2')).statusCode, 200);
});

test('API keys from --api-key-file (one per line, comments skipped), ZAMBA2_API_KEY and ZAMBA2_API_KEYS all count', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'zamba2-keys-'));
  try {
    const file = join(dir, 'keys.txt');
    writeFileSync(file, '# team keys\nfile-key-1\n\n  file-key-2  \n');
    const config = loadConfig({ cli: { apiKey: ['flag-key'], apiKeyFile: file }, env: { ZAMBA2_API_KEYS: 'env-a,env-b' } });
    assert.deepEqual(config.apiKey, ['flag-key', 'file-key-1', 'file-key-2']);
    // Flags win over env for apiKey as for every option; without flags the env keys are used.
    const fromEnv = loadConfig({ env: { ZAMBA2_API_KEY: 'one', ZAMBA2_API_KEYS: 'two, three', ZAMBA2_API_KEY_FILE: file } });
    assert.deepEqual(fromEnv.apiKey, ['one', 'two', 'three', 'file-key-1', 'file-key-2']);

    const { app } = buildTestApp({ config: { apiKey: fromEnv.apiKey } });
    for (const key of fromEnv.apiKey) assert.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: auth(key) })).statusCode, 200, key);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: auth('file-key') })).statusCode, 401);

    writeFileSync(file, '# nothing here\n\n');
    assert.throws(() => loadConfig({ cli: { apiKeyFile: file } }), (err: unknown) => err instanceof ConfigError && /--api-key-file.*holds no key/.test(err.message));
    assert.throws(() => loadConfig({ cli: { apiKeyFile: join(dir, 'missing.txt') } }), (err: unknown) => err instanceof ConfigError && /ENOENT/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('trustProxy off (the default): X-Forwarded-For does not open a new bucket', async () => {
  const { app, config } = buildTestApp({ config: { rateLimitPerMinute: 2 } });
  assert.equal(config.trustProxy, false);
  const spoof = (xff: string) => app.inject({ method: 'GET', url: '/v1/models', remoteAddress: '10.0.0.1', headers: { 'x-forwarded-for': xff } });
  assert.equal((await spoof('1.1.1.1')).statusCode, 200);
  assert.equal((await spoof('2.2.2.2')).statusCode, 200);
  const limited = await spoof('3.3.3.3');
  assert.equal(limited.statusCode, 429);
  assert.equal(limited.json().error.code, 'rate_limit_exceeded');
});

test('trustProxy as a list: only the listed proxies may name the client; the client is the right-most untrusted address', async () => {
  const { app } = buildTestApp({ config: { rateLimitPerMinute: 1, trustProxy: ['10.0.0.5', '192.168.0.0/16'] } });
  const via = (remoteAddress: string, xff: string) => app.inject({ method: 'GET', url: '/v1/models', remoteAddress, headers: { 'x-forwarded-for': xff } });
  // Through the trusted proxy, two different clients have their own buckets.
  assert.equal((await via('10.0.0.5', '203.0.113.7')).statusCode, 200);
  assert.equal((await via('10.0.0.5', '203.0.113.8')).statusCode, 200);
  // A client that prepends a fake address is still 203.0.113.7 (the proxy appended the real one).
  assert.equal((await via('10.0.0.5', '6.6.6.6, 203.0.113.7')).statusCode, 429);
  // Two trusted hops (a CIDR, then the listed proxy): the client is the first untrusted address from the right.
  assert.equal((await via('10.0.0.5', '7.7.7.7, 203.0.113.8, 192.168.1.1')).statusCode, 429);
  // A peer that is not a trusted proxy cannot name anyone: its own address is the bucket.
  assert.equal((await via('198.51.100.9', '1.1.1.1')).statusCode, 200);
  assert.equal((await via('198.51.100.9', '2.2.2.2')).statusCode, 429);
});

test('trustProxy true trusts every hop (documented: only behind a proxy that overwrites the header)', async () => {
  const { app } = buildTestApp({ config: { rateLimitPerMinute: 1, trustProxy: true } });
  const via = (xff: string) => app.inject({ method: 'GET', url: '/v1/models', remoteAddress: '10.0.0.1', headers: { 'x-forwarded-for': xff } });
  assert.equal((await via('1.1.1.1')).statusCode, 200);
  assert.equal((await via('1.1.1.1')).statusCode, 429);
  assert.equal((await via('2.2.2.2')).statusCode, 200);
});

test('trustProxy from env, flags and files: true/false, comma lists; bad entries and hop counts stop start-up', () => {
  assert.equal(loadConfig({ env: { ZAMBA2_TRUST_PROXY: 'true' } }).trustProxy, true);
  assert.equal(loadConfig({ env: { ZAMBA2_TRUST_PROXY: 'off' } }).trustProxy, false);
  assert.deepEqual(loadConfig({ cli: { trustProxy: '10.0.0.5, 10.1.0.0/16,loopback' } }).trustProxy, ['10.0.0.5', '10.1.0.0/16', 'loopback']);
  assert.deepEqual(loadConfig({ cli: { trustProxy: '::1,fd00::/8' } }).trustProxy, ['::1', 'fd00::/8']);
  const dir = mkdtempSync(join(tmpdir(), 'zamba2-trust-'));
  try {
    const yaml = join(dir, 'server.yaml');
    writeFileSync(yaml, 'trust-proxy: [10.0.0.5, 10.0.0.0/255.0.0.0]\n');
    assert.deepEqual(loadConfig({ configFile: yaml }).trustProxy, ['10.0.0.5', '10.0.0.0/255.0.0.0']);
    writeFileSync(yaml, 'trust-proxy: "10.0.0.5, 10.0.0.6"\n');
    assert.deepEqual(loadConfig({ configFile: yaml }).trustProxy, ['10.0.0.5', '10.0.0.6']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => loadConfig({ cli: { trustProxy: '2' } }), (err: unknown) => err instanceof ConfigError && /trustProxy \(--trust-proxy\).*hop counts are not supported/.test(err.message));
  assert.throws(() => loadConfig({ env: { ZAMBA2_TRUST_PROXY: '10.0.0.0/33' } }), ConfigError);
  assert.throws(() => loadConfig({ env: { ZAMBA2_TRUST_PROXY: 'proxy.example.com' } }), ConfigError);
});

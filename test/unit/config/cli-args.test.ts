import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, parseServeArgs, serveUsage } from '../../../src/cli/args.js';
import { loadConfig } from '../../../src/config/load-config.js';
import { CONFIG_KEYS, flagName } from '../../../src/config/schema.js';

test('flags map onto options; --api-key repeats; a positional is the model', () => {
  const args = parseServeArgs(['/m/Zamba2', '--device', 'fake', '--api-key', 'a', '--api-key', 'b', '--log-requests', '-c', 'x.yaml']);
  assert.deepEqual(args.cli, { model: '/m/Zamba2', device: 'fake', apiKey: ['a', 'b'], logRequests: true });
  assert.equal(args.configFile, 'x.yaml');
  const config = loadConfig({ cli: parseServeArgs(['--max-model-len', '512', '--api-key', 'k']).cli });
  assert.equal(config.maxModelLen, 512);
  assert.deepEqual(config.apiKey, ['k']);
});

test('unknown flags, two models, or a model twice are usage errors', () => {
  assert.throws(() => parseServeArgs(['--bogus']), UsageError);
  assert.throws(() => parseServeArgs(['a', 'b']), UsageError);
  assert.throws(() => parseServeArgs(['a', '--model', 'b']), UsageError);
});

test('help lists a flag for every option', () => {
  const usage = serveUsage();
  for (const key of CONFIG_KEYS) assert.ok(usage.includes(`--${flagName(key)}`), key);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findFreePort, startBaselineCommand, serverEntryCommand } from '../../../src/bench/server-process.js';
import { getOnce } from '../../../src/bench/sse-client.js';

test('a baseline command is started, waited for, and stopped with its whole process group', async () => {
  const port = await findFreePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // Through a shell with a pipe, so the server is a grandchild: stopping must reach it too.
  const server = await startBaselineCommand({
    command: `${JSON.stringify(process.execPath)} --import tsx test/unit/bench/tiny-openai-server-main.ts ${port} | cat`,
    baseUrl,
    readyTimeoutMs: 60_000,
    echoLogs: false,
  });
  assert.equal(server.baseUrl, baseUrl);
  const models = await getOnce(`${baseUrl}/v1/models`);
  assert.equal(models.status, 200);
  assert.match(models.body, /baseline-model/);
  await server.stop(5000);
  await assert.rejects(getOnce(`${baseUrl}/health`, {}, 1000));
});

test('a command that exits before it is ready fails with its output', async () => {
  await assert.rejects(
    startBaselineCommand({ command: 'echo "no such model" >&2; exit 3', baseUrl: 'http://127.0.0.1:9', readyTimeoutMs: 30_000, echoLogs: false }),
    (err: Error) => {
      assert.match(err.message, /exited \(3\)/);
      assert.match(err.message, /no such model/);
      return true;
    },
  );
});

test('from sources the server entry runs through tsx', () => {
  const argv = serverEntryCommand();
  assert.deepEqual(argv.slice(0, 2), ['--import', 'tsx']);
  assert.match(argv[2] ?? '', /src[\\/]main\.ts$/);
});

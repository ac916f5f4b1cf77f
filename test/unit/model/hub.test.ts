import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { defaultHubCacheDir, isHubRepoId, repoCacheFolder, resolveModel } from '../../../src/model/hub.js';
import { makeCheckpoint } from '../../../src/model/make-checkpoint.js';
import { loadCheckpoint } from '../../../src/model/index.js';
import { startFakeHub, type FakeRepo } from './fake-hub-server.js';
import { smallDimsOneBlock, smallDimsTwoBlocks } from './small-dims.js';

const SHA = 'a'.repeat(40);

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hub-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A repo in hub layout from a fresh random checkpoint, plus files a Zamba2 engine must not fetch. */
function fixtureRepo(dir: string, sharded: boolean): FakeRepo {
  makeCheckpoint({ dims: sharded ? smallDimsTwoBlocks() : smallDimsOneBlock(), outDir: dir, seed: 4, maxShardBytes: sharded ? 60_000 : undefined });
  const files = new Map<string, Buffer>(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
  files.set('README.md', Buffer.from('# tiny'));
  files.set('pytorch_model.bin', Buffer.alloc(1000));
  files.set('legacy-00001-of-00001.safetensors', Buffer.alloc(2000));
  files.set('original/model.safetensors', Buffer.alloc(100));
  return { sha: SHA, files };
}

function sink(): { stream: Writable; text: () => string } {
  let out = '';
  return { stream: new Writable({ write(chunk, _enc, cb) { out += String(chunk); cb(); } }), text: () => out };
}

const resolveCount = (reqs: Array<{ url: string }>): number => reqs.filter((r) => r.url.includes('/resolve/')).length;

test('hub id: only the needed files land in the HF cache layout; a second call downloads nothing', async (t) => {
  const cacheDir = tmp(t);
  const repo = fixtureRepo(tmp(t), false);
  const hub = await startFakeHub(new Map([['test-org/tiny-zamba2', repo]]));
  t.after(() => hub.close());
  const progress = sink();
  const r = await resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: hub.endpoint, env: {}, progress: progress.stream });
  assert.equal(r.source, 'hub');
  assert.equal(r.commit, SHA);
  const storage = repoCacheFolder(cacheDir, 'test-org/tiny-zamba2');
  assert.equal(storage, join(cacheDir, 'models--test-org--tiny-zamba2'));
  assert.equal(r.dir, join(storage, 'snapshots', SHA));
  assert.equal(readFileSync(join(storage, 'refs', 'main'), 'utf8'), SHA);
  assert.deepEqual(readdirSync(r.dir).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  assert.deepEqual([...r.downloadedFiles].sort(), readdirSync(r.dir).sort());
  assert.equal(r.downloadedBytes, [...repo.files].filter(([p]) => readdirSync(r.dir).includes(p)).reduce((a, [, d]) => a + d.length, 0));
  const link = join(r.dir, 'model.safetensors');
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.match(readlinkSync(link), /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
  assert.deepEqual(readFileSync(link), repo.files.get('model.safetensors'));
  assert.match(progress.text(), /downloading test-org\/tiny-zamba2 \[#+\] 100%/);
  assert.equal(hub.requests.some((q) => /pytorch_model|legacy|original|README/.test(q.url)), false);
  const ck = await loadCheckpoint(r.dir);
  assert.deepEqual(ck.dims, smallDimsOneBlock());
  ck.close();

  const before = resolveCount(hub.requests);
  const again = await resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: hub.endpoint, env: {}, progress: null });
  assert.equal(again.dir, r.dir);
  assert.deepEqual(again.downloadedFiles, []);
  assert.equal(resolveCount(hub.requests), before, 'no file fetched on the second call');
});

test('sharded repo: index first, then only the shards it lists; HF_ENDPOINT, HF_HOME and HF_TOKEN from the environment', async (t) => {
  const home = tmp(t);
  const repo = fixtureRepo(tmp(t), true);
  const hub = await startFakeHub(new Map([['test-org/tiny-sharded', repo]]), { token: 'hf_secret' });
  t.after(() => hub.close());
  const env = { HF_ENDPOINT: hub.endpoint, HF_HOME: home };
  await assert.rejects(resolveModel('test-org/tiny-sharded', { env, progress: null }), /refused access to test-org\/tiny-sharded \(HTTP 401\); set HF_TOKEN/);
  const r = await resolveModel('test-org/tiny-sharded', { env: { ...env, HF_TOKEN: 'hf_secret' }, progress: null });
  assert.ok(r.dir.startsWith(join(home, 'hub', 'models--test-org--tiny-sharded', 'snapshots')));
  const shards = readdirSync(r.dir).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  assert.ok(shards.length >= 2);
  assert.equal(existsSync(join(r.dir, 'legacy-00001-of-00001.safetensors')), false);
  assert.ok(hub.requests.filter((q) => q.url.includes('/resolve/')).every((q) => q.auth === 'Bearer hf_secret'));
  const ck = await loadCheckpoint(r.dir);
  assert.equal(ck.safetensorsFiles.length, shards.length);
  ck.close();
});

test('an interrupted download resumes from where it stopped', async (t) => {
  const cacheDir = tmp(t);
  const repo = fixtureRepo(tmp(t), false);
  const size = repo.files.get('model.safetensors')!.length;
  const hub = await startFakeHub(new Map([['test-org/tiny-zamba2', repo]]));
  t.after(() => hub.close());
  hub.cutOnce('model.safetensors', 10_000);
  await assert.rejects(resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: hub.endpoint, env: {}, progress: null }),
    (err: Error) => /download of test-org\/tiny-zamba2 .*failed .*run again to resume|ended at 10000 of/.test(err.message) && !err.message.includes('\n'));
  const blobs = join(repoCacheFolder(cacheDir, 'test-org/tiny-zamba2'), 'blobs');
  const partial = readdirSync(blobs).find((f) => f.endsWith('.incomplete'));
  assert.ok(partial, 'partial download kept');
  assert.equal(statSync(join(blobs, partial!)).size, 10_000);
  const r = await resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: hub.endpoint, env: {}, progress: null });
  assert.ok(hub.requests.some((q) => q.url.endsWith('/model.safetensors') && q.range === `bytes=10000-${size - 1}`), 'range request from the partial length');
  assert.deepEqual(r.downloadedFiles, ['model.safetensors']);
  assert.equal(r.downloadedBytes, size - 10_000);
  assert.deepEqual(readFileSync(join(r.dir, 'model.safetensors')), repo.files.get('model.safetensors'));
  assert.equal(readdirSync(blobs).some((f) => f.endsWith('.incomplete')), false);
});

test('offline: a clear error when nothing is cached, the cache when it is', async (t) => {
  const cacheDir = tmp(t);
  const repo = fixtureRepo(tmp(t), false);
  const hub = await startFakeHub(new Map([['test-org/tiny-zamba2', repo]]));
  const deadEndpoint = hub.endpoint;
  await hub.close(); // nothing listens there any more
  await assert.rejects(resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: deadEndpoint, env: {}, progress: null }), (err: Error) => {
    assert.match(err.message, new RegExp(`^cannot reach the hub at ${deadEndpoint.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\) to download test-org/tiny-zamba2; pass a local folder, .*HF_HUB_OFFLINE=1`));
    assert.equal(err.message.includes('\n'), false);
    return true;
  });
  await assert.rejects(resolveModel('test-org/tiny-zamba2', { cacheDir, env: { HF_HUB_OFFLINE: '1' }, progress: null }),
    /HF_HUB_OFFLINE is set and test-org\/tiny-zamba2 \(revision main\) is not fully in the cache/);

  const live = await startFakeHub(new Map([['test-org/tiny-zamba2', repo]]));
  const online = await resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: live.endpoint, env: {}, progress: null });
  await live.close();
  const offline = await resolveModel('test-org/tiny-zamba2', { cacheDir, env: { HF_HUB_OFFLINE: '1' }, progress: null });
  assert.equal(offline.source, 'cache');
  assert.equal(offline.dir, online.dir);
  const notice = sink();
  const unreachable = await resolveModel('test-org/tiny-zamba2', { cacheDir, endpoint: deadEndpoint, env: {}, progress: notice.stream });
  assert.equal(unreachable.source, 'cache');
  assert.match(notice.text(), /cannot reach the hub .*using the cached snapshot/);
});

test('local folders, bad arguments, unknown repos, default cache dir', async (t) => {
  const dir = tmp(t);
  const r = await resolveModel(dir, { progress: null });
  assert.deepEqual(r, { dir, source: 'local', downloadedFiles: [], downloadedBytes: 0 });
  writeFileSync(join(dir, 'file'), 'x');
  await assert.rejects(resolveModel(join(dir, 'file'), { progress: null }), /is a file; pass the checkpoint folder/);
  await assert.rejects(resolveModel('./no/such/dir', { progress: null }), /no such folder, and not a hub id/);
  assert.equal(isHubRepoId('Zyphra/Zamba2-1.2B-instruct'), true);
  assert.equal(isHubRepoId('../x'), false);
  const hub = await startFakeHub(new Map());
  t.after(() => hub.close());
  await assert.rejects(resolveModel('test-org/missing', { cacheDir: dir, endpoint: hub.endpoint, env: {}, progress: null }), /test-org\/missing \(revision main\) was not found on the hub at http/);
  assert.equal(defaultHubCacheDir({ HF_HOME: '/x/hf' }), '/x/hf/hub');
  assert.equal(defaultHubCacheDir({ HF_HOME: '/x/hf', HF_HUB_CACHE: '/y' }), '/y');
});

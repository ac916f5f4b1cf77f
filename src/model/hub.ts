/**
 * `--model` resolution: a local folder is used as is; a hub id (`Zyphra/Zamba2-1.2B-instruct`) is
 * downloaded once into the Hugging Face cache layout that huggingface_hub and transformers share
 * (`$HF_HUB_CACHE` or `$HF_HOME/hub`: models--Org--Name/{refs/REV, blobs/ETAG, snapshots/COMMIT/FILE
 * → ../../blobs/ETAG}). Only the files a Zamba2 engine reads are fetched (config, safetensors named
 * by the index, tokenizer files, generation config), never legacy weight folders or .bin files.
 *
 * Hub calls go through @huggingface/hub (modelInfo → commit sha, listFiles → sizes and etags,
 * downloadFile → a range-capable Blob); writing the cache is done here so that a download shows a
 * progress bar and resumes: bytes land in blobs/ETAG.incomplete, and a later call continues from its
 * length with a Range request. A second call downloads nothing. Who calls: main.ts, once at start.
 */
import { existsSync, mkdirSync, openSync, closeSync, writeSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { homedir } from 'node:os';
import { downloadFile, listFiles, modelInfo, HubApiError, type ListFileEntry } from '@huggingface/hub';
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from './safetensors.js';
import { createProgressBar, type ProgressBar } from './progress-bar.js';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** Small files fetched when the repo has them (config.json is required). */
export const HUB_SMALL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export interface ResolveModelOptions {
  /** Default: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default: HF_TOKEN (or HUGGING_FACE_HUB_TOKEN). */
  token?: string;
  /** Branch, tag or commit; default 'main'. */
  revision?: string;
  /** Use the cache only; default HF_HUB_OFFLINE=1. */
  offline?: boolean;
  /** Where the progress bar and notices go; default process.stderr; null for silence. */
  progress?: (NodeJS.WritableStream & { isTTY?: boolean }) | null;
  /** Environment to read the defaults from (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
}

export interface ResolvedModel {
  /** The folder to load: the argument itself, or the cache snapshot. */
  dir: string;
  /** local: a folder argument; hub: checked against the hub (files fetched as needed); cache: used from the cache without the hub. */
  source: 'local' | 'hub' | 'cache';
  repoId?: string;
  revision?: string;
  commit?: string;
  /** Files fetched by this call (relative paths) and their bytes. */
  downloadedFiles: string[];
  downloadedBytes: number;
}

export class ModelResolveError extends Error {
  override name = 'ModelResolveError';
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
const COMMIT = /^[0-9a-f]{40}$/;

export function isHubRepoId(arg: string): boolean {
  return REPO_ID.test(arg) && !arg.includes('..');
}

export function defaultHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['HF_HUB_CACHE'] ?? env['HUGGINGFACE_HUB_CACHE'] ??
    join(env['HF_HOME'] ?? join(env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'huggingface'), 'hub');
}

/** models--Org--Name under the cache dir. */
export function repoCacheFolder(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.split('/').join('--')}`);
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/** Weight files a snapshot folder needs, from its index (or the single file). Null when it has neither. */
function neededWeightFiles(dir: string): string[] | null {
  const index = join(dir, SAFETENSORS_INDEX_FILE);
  if (existsSync(index)) {
    try {
      const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      return [SAFETENSORS_INDEX_FILE, ...new Set(Object.values(map))];
    } catch {
      return null;
    }
  }
  return existsSync(join(dir, SAFETENSORS_SINGLE_FILE)) ? [SAFETENSORS_SINGLE_FILE] : null;
}

/** The cached snapshot folder for repo@revision when it holds config.json and every weight file. */
function completeCachedSnapshot(storage: string, revision: string): { dir: string; commit: string } | null {
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const ref = join(storage, 'refs', revision);
    if (!existsSync(ref)) return null;
    commit = readFileSync(ref, 'utf8').trim();
  }
  const dir = join(storage, 'snapshots', commit);
  if (!existsSync(join(dir, 'config.json'))) return null;
  const weights = neededWeightFiles(dir);
  if (!weights || !weights.every((f) => existsSync(join(dir, f)))) return null;
  return { dir, commit };
}

function errorReason(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

function etagOf(entry: ListFileEntry): string {
  const etag = entry.lfs?.oid ?? entry.xetHash ?? entry.oid;
  if (!etag || !/^[0-9a-zA-Z._-]+$/.test(etag)) throw new ModelResolveError(`hub listing of ${entry.path} has no usable etag`);
  return etag;
}

function linkIntoSnapshot(blobPath: string, pointerPath: string): void {
  mkdirSync(dirname(pointerPath), { recursive: true });
  rmSync(pointerPath, { force: true });
  try {
    symlinkSync(relative(dirname(pointerPath), blobPath), pointerPath);
  } catch {
    copyFileSync(blobPath, pointerPath); // filesystems without symlinks, as huggingface_hub does
  }
}

interface HubContext {
  repoId: string;
  endpoint: string;
  token: string | undefined;
  fetch: typeof fetch | undefined;
}

/** Fetches one file into blobs/ETAG (resuming a .incomplete), advancing the bar. Returns bytes fetched. */
async function fetchBlob(ctx: HubContext, commit: string, entry: ListFileEntry, blobPath: string, bar: ProgressBar | null): Promise<number> {
  const incomplete = `${blobPath}.incomplete`;
  const size = entry.lfs?.size ?? entry.size;
  let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
  if (have > size) { rmSync(incomplete); have = 0; }
  bar?.advance(have);
  const blob = await downloadFile({
    repo: { type: 'model', name: ctx.repoId }, path: entry.path, revision: commit, hubUrl: ctx.endpoint,
    accessToken: ctx.token, fetch: ctx.fetch,
  });
  if (!blob) throw new ModelResolveError(`${ctx.repoId}: ${entry.path} disappeared from the hub at ${ctx.endpoint}`);
  if (blob.size !== size) throw new ModelResolveError(`${ctx.repoId}: ${entry.path} is ${blob.size} bytes on the hub, listed as ${size}`);
  mkdirSync(dirname(blobPath), { recursive: true });
  const fd = openSync(incomplete, have > 0 ? 'a' : 'w');
  let fetched = 0;
  try {
    if (have < size) {
      // Synchronous appends: whatever arrived before an interruption is on disk for the next try.
      const reader = blob.slice(have).stream().getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        let off = 0;
        while (off < value.byteLength) off += writeSync(fd, value, off, value.byteLength - off);
        fetched += value.byteLength;
        bar?.advance(value.byteLength);
      }
    }
  } finally {
    closeSync(fd);
  }
  const got = statSync(incomplete).size;
  if (got !== size) {
    rmSync(incomplete); // a server that ignored the Range header: start this file over next time
    throw new ModelResolveError(`${ctx.repoId}: download of ${entry.path} ended at ${got} of ${size} bytes; run again to retry`);
  }
  renameSync(incomplete, blobPath);
  return fetched;
}

function hubError(ctx: HubContext, revision: string, err: unknown): Error {
  if (err instanceof HubApiError) {
    if (err.statusCode === 401 || err.statusCode === 403) {
      return new ModelResolveError(`the hub at ${ctx.endpoint} refused access to ${ctx.repoId} (HTTP ${err.statusCode}); set HF_TOKEN to a token with access to this repo`);
    }
    if (err.statusCode === 404) return new ModelResolveError(`${ctx.repoId} (revision ${revision}) was not found on the hub at ${ctx.endpoint}`);
    return new ModelResolveError(`the hub at ${ctx.endpoint} answered HTTP ${err.statusCode} for ${ctx.repoId}`);
  }
  if (err instanceof TypeError && /token/i.test(err.message)) return new ModelResolveError(`invalid HF_TOKEN: ${err.message}`);
  return err as Error;
}

/**
 * Turns `--model` into a checkpoint folder. A path that exists is used as is; otherwise the
 * argument must be a hub id. Errors are one line: a missing folder, an unreachable hub (with what
 * to do), access refused, a repo without config.json or safetensors weights.
 */
export async function resolveModel(modelArg: string, options: ResolveModelOptions = {}): Promise<ResolvedModel> {
  const env = options.env ?? process.env;
  if (existsSync(modelArg)) {
    if (!statSync(modelArg).isDirectory()) throw new ModelResolveError(`--model ${modelArg}: is a file; pass the checkpoint folder`);
    return { dir: resolve(modelArg), source: 'local', downloadedFiles: [], downloadedBytes: 0 };
  }
  if (!isHubRepoId(modelArg)) {
    throw new ModelResolveError(`--model ${modelArg}: no such folder, and not a hub id of the form Org/Name`);
  }
  const ctx: HubContext = {
    repoId: modelArg,
    endpoint: (options.endpoint ?? env['HF_ENDPOINT'] ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, ''),
    token: options.token ?? env['HF_TOKEN'] ?? env['HUGGING_FACE_HUB_TOKEN'] ?? undefined,
    fetch: options.fetch,
  };
  const revision = options.revision ?? 'main';
  const cacheDir = options.cacheDir ?? defaultHubCacheDir(env);
  const storage = repoCacheFolder(cacheDir, ctx.repoId);
  const progress = options.progress === undefined ? process.stderr : options.progress;
  const cached = (): ResolvedModel | null => {
    const snap = completeCachedSnapshot(storage, revision);
    return snap && { dir: snap.dir, source: 'cache', repoId: ctx.repoId, revision, commit: snap.commit, downloadedFiles: [], downloadedBytes: 0 };
  };

  if (options.offline ?? truthy(env['HF_HUB_OFFLINE'])) {
    const hit = cached();
    if (hit) return hit;
    throw new ModelResolveError(`HF_HUB_OFFLINE is set and ${ctx.repoId} (revision ${revision}) is not fully in the cache at ${storage}; pass a local folder or download it once online`);
  }

  let commit: string;
  try {
    const info = await modelInfo({ name: ctx.repoId, revision, additionalFields: ['sha'], hubUrl: ctx.endpoint, accessToken: ctx.token, fetch: ctx.fetch });
    commit = String(info.sha);
  } catch (err) {
    if (err instanceof HubApiError || (err instanceof TypeError && /token/i.test(err.message))) throw hubError(ctx, revision, err);
    const hit = cached();
    if (hit) {
      progress?.write(`cannot reach the hub at ${ctx.endpoint} (${errorReason(err)}); using the cached snapshot of ${ctx.repoId} at ${hit.dir}\n`);
      return hit;
    }
    throw new ModelResolveError(`cannot reach the hub at ${ctx.endpoint} (${errorReason(err)}) to download ${ctx.repoId}; pass a local folder, set HF_ENDPOINT to a reachable mirror, or set HF_HUB_OFFLINE=1 to use files already in the cache (${storage})`);
  }
  if (!COMMIT.test(commit)) throw new ModelResolveError(`the hub at ${ctx.endpoint} returned no commit for ${ctx.repoId}@${revision}`);

  try {
    const entries = new Map<string, ListFileEntry>();
    for await (const e of listFiles({ repo: { type: 'model', name: ctx.repoId }, revision: commit, hubUrl: ctx.endpoint, accessToken: ctx.token, fetch: ctx.fetch })) {
      if (e.type === 'file') entries.set(e.path, e);
    }
    if (!entries.has('config.json')) throw new ModelResolveError(`${ctx.repoId}@${revision} has no config.json on the hub at ${ctx.endpoint}`);
    const snapshot = join(storage, 'snapshots', commit);
    const downloadedFiles: string[] = [];
    let downloadedBytes = 0;

    const ensure = async (paths: string[]): Promise<void> => {
      const todo = paths.map((p) => entries.get(p)!).filter((e) => !existsSync(join(snapshot, e.path)));
      const missingBlobs = todo.filter((e) => !existsSync(join(storage, 'blobs', etagOf(e))));
      const total = missingBlobs.reduce((a, e) => a + (e.lfs?.size ?? e.size), 0);
      const bar = progress && missingBlobs.length > 0 ? createProgressBar(`downloading ${ctx.repoId}`, total, progress) : null;
      try {
        for (const e of todo) {
          const blobPath = join(storage, 'blobs', etagOf(e));
          if (!existsSync(blobPath)) {
            downloadedBytes += await fetchBlob(ctx, commit, e, blobPath, bar);
            downloadedFiles.push(e.path);
          }
          linkIntoSnapshot(blobPath, join(snapshot, e.path));
        }
      } catch (err) {
        bar?.stop();
        throw err;
      }
      bar?.done();
    };

    const small = HUB_SMALL_FILES.filter((f) => entries.has(f));
    if (entries.has(SAFETENSORS_INDEX_FILE)) {
      await ensure([...small, SAFETENSORS_INDEX_FILE]);
      const shards = neededWeightFiles(snapshot);
      if (!shards) throw new ModelResolveError(`${ctx.repoId}: ${SAFETENSORS_INDEX_FILE} is not valid JSON with a weight_map`);
      const absent = shards.filter((s) => !entries.has(s));
      if (absent.length > 0) throw new ModelResolveError(`${ctx.repoId}: ${SAFETENSORS_INDEX_FILE} lists ${absent[0]}, which the repo does not have`);
      await ensure(shards.filter((s) => s !== SAFETENSORS_INDEX_FILE));
    } else if (entries.has(SAFETENSORS_SINGLE_FILE)) {
      await ensure([...small, SAFETENSORS_SINGLE_FILE]);
    } else {
      throw new ModelResolveError(`${ctx.repoId}@${revision} has no ${SAFETENSORS_SINGLE_FILE} or ${SAFETENSORS_INDEX_FILE} (only safetensors weights are supported)`);
    }
    if (revision !== commit) {
      mkdirSync(join(storage, 'refs'), { recursive: true });
      writeFileSync(join(storage, 'refs', revision), commit);
    }
    return { dir: snapshot, source: 'hub', repoId: ctx.repoId, revision, commit, downloadedFiles, downloadedBytes };
  } catch (err) {
    if (err instanceof ModelResolveError) throw err;
    if (err instanceof HubApiError) throw hubError(ctx, revision, err);
    throw new ModelResolveError(`download of ${ctx.repoId} from ${ctx.endpoint} failed (${errorReason(err)}); run again to resume`);
  }
}

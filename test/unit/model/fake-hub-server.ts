/**
 * A local stand-in for the Hugging Face Hub endpoints that @huggingface/hub calls for a download:
 *   GET /api/models/ORG/NAME/revision/REV   (modelInfo: sha)
 *   GET /api/models/ORG/NAME/tree/REV       (listFiles: path, size, oid, lfs)
 *   GET /ORG/NAME/resolve/REV/PATH          (fileDownloadInfo probe with Range 0-0, then the body, with Range)
 * It logs every request and can cut one file's body short once, to test resumed downloads.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface FakeRepo {
  sha: string;
  files: Map<string, Buffer>;
}

export interface FakeHub {
  endpoint: string;
  requests: Array<{ url: string; range: string | undefined; auth: string | undefined }>;
  /** The next body request for `path` (not the 0-0 probe) sends only `bytes` bytes, then drops the connection. */
  cutOnce(path: string, bytes: number): void;
  close(): Promise<void>;
}

const isLfs = (path: string): boolean => path.endsWith('.safetensors') || path.endsWith('.bin');

const digests = new WeakMap<Buffer, { sha1: string; sha256: string }>();
function digest(data: Buffer): { sha1: string; sha256: string } {
  let d = digests.get(data);
  if (!d) {
    d = { sha1: createHash('sha1').update(data).digest('hex'), sha256: createHash('sha256').update(data).digest('hex') };
    digests.set(data, d);
  }
  return d;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

export async function startFakeHub(repos: Map<string, FakeRepo>, opts: { token?: string } = {}): Promise<FakeHub> {
  const requests: FakeHub['requests'] = [];
  const cuts = new Map<string, number>();
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ url: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) return json(res, 401, { error: 'Invalid credentials' });
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'api' && parts[1] === 'models') {
      const repo = repos.get(`${parts[2]}/${parts[3]}`);
      if (!repo) return json(res, 404, { error: 'Repository not found' });
      if (parts[4] === 'revision') {
        return json(res, 200, { _id: 'fake', id: `${parts[2]}/${parts[3]}`, sha: repo.sha, private: false, gated: false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z' });
      }
      if (parts[4] === 'tree') {
        const entries = [...repo.files].map(([path, data]) => ({
          type: 'file', path, size: data.length, oid: digest(data).sha1,
          ...(isLfs(path) ? { lfs: { oid: digest(data).sha256, size: data.length, pointerSize: 134 } } : {}),
        }));
        return json(res, 200, [{ type: 'directory', path: 'original', size: 0, oid: '0'.repeat(40) }, ...entries.filter((e) => !e.path.includes('/'))]);
      }
    }
    const resolveAt = parts.indexOf('resolve');
    if (resolveAt === 2) {
      const repo = repos.get(`${parts[0]}/${parts[1]}`);
      const path = parts.slice(4).join('/');
      const data = repo?.files.get(path);
      if (!repo || parts[3] !== repo.sha || !data) {
        res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' });
        return void res.end('not found');
      }
      const etag = isLfs(path) ? digest(data).sha256 : digest(data).sha1;
      const headers: Record<string, string> = { ETag: `"${etag}"`, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
      if (isLfs(path)) headers['X-Linked-ETag'] = `"${etag}"`;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      let start = 0;
      let end = data.length - 1;
      if (m) {
        start = Number(m[1]);
        end = m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
      }
      const body = data.subarray(start, end + 1);
      if (m) headers['Content-Range'] = `bytes ${start}-${end}/${data.length}`;
      headers['Content-Length'] = String(body.length);
      const cut = cuts.get(path);
      if (cut !== undefined && !(m && end === 0)) {
        cuts.delete(path);
        res.writeHead(m ? 206 : 200, headers);
        res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      res.writeHead(m ? 206 : 200, headers);
      return void res.end(body);
    }
    json(res, 404, { error: `no route for ${url.pathname}` });
  };
  const server: Server = createServer(handle);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    cutOnce: (path, bytes) => cuts.set(path, bytes),
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}

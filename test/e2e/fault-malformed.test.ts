/**
 * Fault: 1,000 malformed requests over real HTTP (raw bytes through node:http, so invalid UTF-8 and
 * broken framing reach the server as sent): fuzzed JSON, wrong types, huge numbers, invalid UTF-8,
 * deep nesting, 10 MB bodies, odd methods and content types. Every one must get an answer (no
 * hang, no dropped connection before a status), no 5xx, and every error an OpenAI error body; the
 * server then still serves a normal request and holds no sequence. FAULT_SOAK=1: 10,000.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { startTestServer, type TestServer } from '../helpers/start-server.js';
import { MODEL, countStatuses, size, waitForIdle } from './fault-server.js';

const TOTAL = size(1000, 10);
const CONCURRENCY = 32;
// Generous: a loaded CI machine can be slow, but a request that hangs never answers at all.
const REQUEST_LIMIT_MS = 120_000;

let server: TestServer;

before(async () => {
  server = await startTestServer({ maxWaiting: 1000, maxModelLen: 512 });
});

after(async () => {
  await server.stop();
});

/** Small deterministic PRNG (mulberry32): the same 1,000 requests every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Malformed {
  kind: string;
  method: string;
  path: string;
  body?: Buffer;
  contentType?: string | null;
  /** Send without Content-Length (chunked transfer encoding). */
  chunked?: boolean;
}

const CHAT = '/v1/chat/completions';
const COMPLETIONS = '/v1/completions';

const validBodies = (r: () => number): [string, Record<string, unknown>] =>
  r() < 0.5
    ? [CHAT, { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3, stream: r() < 0.3 }]
    : [COMPLETIONS, { model: MODEL, prompt: 'Once upon a time', max_tokens: 3, stream: r() < 0.3 }];

const WRONG_VALUES: unknown[] = [
  null, true, false, 0, -1, 1.5, '', 'x', 'NaN', [], {}, [1, 'a'], { a: 1 }, [[[]]], '\u0000', '\ud800', ['\u0000'],
  [{ role: 'user' }], [{ content: 'x' }], [{ role: 7, content: [] }], [{ role: 'user', content: [{ type: 'image_url' }] }],
];
const FIELDS = [
  'model', 'messages', 'prompt', 'max_tokens', 'max_completion_tokens', 'n', 'temperature', 'top_p', 'top_k', 'min_p', 'stop',
  'seed', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'logit_bias', 'echo', 'stop_token_ids', 'min_tokens',
  'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'ignore_eos', 'best_of', 'suffix', 'tools', 'response_format',
];
const HUGE_NUMBERS = ['1e308', '-1e308', '1e309', '-1e309', '9007199254740993', '123456789012345678901234567890', '1e-320', '-0', '4294967296', '2147483648', '0.1e999999'];
const NUMERIC_FIELDS = ['max_tokens', 'n', 'temperature', 'top_p', 'top_k', 'seed', 'logprobs', 'top_logprobs', 'min_tokens', 'best_of', 'max_completion_tokens'];
const INVALID_UTF8 = [[0xff], [0xfe, 0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80, 0x80], [0xe2, 0x82]];

function fuzzedJson(r: () => number): Malformed {
  const [path, body] = validBodies(r);
  let text = JSON.stringify(body);
  const edits = 1 + Math.floor(r() * 4);
  const alphabet = '{}[]",:\\0123456789.eE+-truefalsnul \t\n\u0000\u2028';
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(r() * text.length);
    const op = r();
    if (op < 0.3) text = text.slice(0, at) + text.slice(at + 1);
    else if (op < 0.6) text = text.slice(0, at) + alphabet[Math.floor(r() * alphabet.length)] + text.slice(at);
    else if (op < 0.8) text = text.slice(0, at);
    else text = text.slice(0, at) + text.slice(at, at + 8) + text.slice(at);
  }
  return { kind: 'fuzzed-json', method: 'POST', path, body: Buffer.from(text, 'utf8') };
}

function wrongTypes(r: () => number): Malformed {
  const [path, body] = validBodies(r);
  const count = 1 + Math.floor(r() * 3);
  for (let i = 0; i < count; i++) body[FIELDS[Math.floor(r() * FIELDS.length)]!] = WRONG_VALUES[Math.floor(r() * WRONG_VALUES.length)];
  return { kind: 'wrong-types', method: 'POST', path, body: Buffer.from(JSON.stringify(body)) };
}

function hugeNumbers(r: () => number): Malformed {
  const [path, body] = validBodies(r);
  const field = NUMERIC_FIELDS[Math.floor(r() * NUMERIC_FIELDS.length)]!;
  const value = HUGE_NUMBERS[Math.floor(r() * HUGE_NUMBERS.length)]!;
  let text = JSON.stringify({ ...body, [field]: '__HUGE__' }).replace('"__HUGE__"', value);
  if (r() < 0.3) text = JSON.stringify({ model: MODEL, prompt: [1, 2, 3], max_tokens: 2 }).replace('[1,2,3]', `[1,${value},3]`);
  if (r() < 0.2) text = JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 2, logit_bias: { '__K__': 1 } }).replace('"__K__":1', `"${value}":${value}`);
  return { kind: 'huge-numbers', method: 'POST', path: text.includes('"prompt"') ? COMPLETIONS : path, body: Buffer.from(text) };
}

function invalidUtf8(r: () => number): Malformed {
  const [path, body] = validBodies(r);
  const bad = Buffer.from(INVALID_UTF8[Math.floor(r() * INVALID_UTF8.length)]!);
  const text = JSON.stringify(body);
  // Inside a string value (the prompt / message content), inside a key, or outside any string.
  const where = r();
  const anchor = where < 0.6 ? (text.indexOf('Hello') >= 0 ? text.indexOf('Hello') : text.indexOf('Once')) : where < 0.8 ? text.indexOf('model') : text.indexOf(':');
  const raw = Buffer.concat([Buffer.from(text.slice(0, anchor)), bad, Buffer.from(text.slice(anchor))]);
  return { kind: 'invalid-utf8', method: 'POST', path, body: raw };
}

function deepNesting(r: () => number): Malformed {
  const depth = Math.floor(10 ** (3 + r() * 2)); // 1,000 .. 100,000
  const open = r() < 0.5 ? '[' : '{"a":';
  const close = open === '[' ? ']' : '}';
  const balanced = r() < 0.7;
  const nested = open.repeat(depth) + '1' + (balanced ? close.repeat(depth) : '');
  const field = r() < 0.5 ? 'messages' : r() < 0.5 ? 'prompt' : 'logit_bias';
  const text = r() < 0.2 ? nested : `{"model":"${MODEL}","${field}":${nested},"max_tokens":2}`;
  return { kind: 'deep-nesting', method: 'POST', path: field === 'messages' ? CHAT : COMPLETIONS, body: Buffer.from(text) };
}

function tenMegabytes(r: () => number, i: number): Malformed {
  const bytes = 10 * 1024 * 1024;
  const flavour = i % 3;
  const body =
    flavour === 0
      ? Buffer.from(JSON.stringify({ model: MODEL, prompt: 'a'.repeat(bytes), max_tokens: 2 }))
      : flavour === 1
        ? Buffer.alloc(bytes, Math.floor(r() * 256))
        : Buffer.from(`{"model":"${MODEL}","messages":[${'{"role":"user","content":"x"},'.repeat(bytes / 30)}{"role":"user","content":"y"}]}`);
  return { kind: '10MB-body', method: 'POST', path: flavour === 2 ? CHAT : COMPLETIONS, body, chunked: r() < 0.5 };
}

function misc(r: () => number, i: number): Malformed {
  const cases: Malformed[] = [
    { kind: 'misc', method: 'GET', path: COMPLETIONS },
    { kind: 'misc', method: 'PUT', path: CHAT, body: Buffer.from('{}') },
    { kind: 'misc', method: 'POST', path: CHAT },
    { kind: 'misc', method: 'POST', path: CHAT, body: Buffer.from('null') },
    { kind: 'misc', method: 'POST', path: CHAT, body: Buffer.from('[1,2,3]') },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('42') },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('"just a string"') },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('{"prompt":"hi","max_tokens":2}'), contentType: 'text/plain' },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('prompt=hi'), contentType: 'application/x-www-form-urlencoded' },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('{"prompt":"hi","max_tokens":2}'), contentType: null },
    { kind: 'misc', method: 'POST', path: '/v1/completions?x=%zz', body: Buffer.from('{"prompt":"hi","max_tokens":2}') },
    { kind: 'misc', method: 'POST', path: '/v1/nope', body: Buffer.from('{}') },
    { kind: 'misc', method: 'GET', path: '/v1/models/%E0%A4%A' },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from(`{"prompt":"${'\\u0000'.repeat(50)}","max_tokens":2}`) },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from(`{"prompt":"${'😀'.repeat(200)}","max_tokens":2}`) },
    { kind: 'misc', method: 'POST', path: CHAT, body: Buffer.from(`{"messages":[{"role":"user","content":"${'word '.repeat(2000)}"}],"max_tokens":2}`) },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from(`{"prompt":${JSON.stringify(Array.from({ length: 100 }, () => "p"))},"max_tokens":2}`) },
    { kind: 'misc', method: 'POST', path: COMPLETIONS, body: Buffer.from('{"prompt":"hi","prompt":[1,2],"max_tokens":2}') },
  ];
  void r;
  const picked = cases[i % cases.length]!;
  return { ...picked, kind: `misc#${i % cases.length}` };
}

function buildRequests(): Malformed[] {
  const r = rng(8);
  const plan: Array<[number, (r: () => number, i: number) => Malformed]> = [
    [0.25, fuzzedJson],
    [0.22, wrongTypes],
    [0.15, hugeNumbers],
    [0.15, invalidUtf8],
    [0.1, deepNesting],
    [0.02, tenMegabytes],
    [0.11, misc],
  ];
  const out: Malformed[] = [];
  for (const [share, make] of plan) {
    const count = Math.round(share * TOTAL);
    for (let i = 0; i < count; i++) out.push(make(r, i));
  }
  while (out.length < TOTAL) out.push(fuzzedJson(r));
  return out.slice(0, TOTAL);
}

interface Outcome {
  status: number | 'no-response' | 'timeout';
  body: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function send(req: Malformed): Promise<Outcome> {
  const url = new URL(server.url);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (o: Outcome) => {
      if (!settled) {
        settled = true;
        resolve(o);
      }
    };
    const headers: Record<string, string | number> = {};
    if (req.contentType !== null) headers['content-type'] = req.contentType ?? 'application/json';
    if (req.body && !req.chunked) headers['content-length'] = req.body.length;
    const r = httpRequest({ host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    r.setTimeout(REQUEST_LIMIT_MS, () => {
      finish({ status: 'timeout', body: '' });
      r.destroy();
    });
    // A server that answers 413 early may close the socket while a 10 MB body is still going out:
    // the status already arrived, so a write error after it is expected; before it, it is a failure.
    r.on('error', () => finish({ status: 'no-response', body: '' }));
    if (req.body) r.end(req.body);
    else r.end();
  });
}

function isOpenAiError(body: string): boolean {
  try {
    const e = (JSON.parse(body) as { error?: Record<string, unknown> }).error;
    return !!e && typeof e.message === 'string' && typeof e.type === 'string' && 'param' in e && 'code' in e;
  } catch {
    return false;
  }
}

test(`${TOTAL} malformed requests: every one answered, no 5xx, OpenAI error bodies; the server still serves`, async (t) => {
  const requests = buildRequests();
  const outcomes: Outcome[] = new Array(requests.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < requests.length) {
        const i = next++;
        outcomes[i] = await send(requests[i]!);
      }
    }),
  );
  agent.destroy();

  const byKind: Record<string, Record<string, number>> = {};
  const problems: string[] = [];
  for (let i = 0; i < requests.length; i++) {
    const req = requests[i]!;
    const o = outcomes[i]!;
    const kindGroup = req.kind.split('#')[0]!;
    (byKind[kindGroup] ??= {})[String(o.status)] = (byKind[kindGroup]![String(o.status)] ?? 0) + 1;
    if (typeof o.status !== 'number' || o.status >= 500) problems.push(`${req.kind} ${req.method} ${req.path} ${req.contentType === undefined ? '' : `content-type ${req.contentType} `}→ ${o.status} ${o.body.slice(0, 200)}`);
    else if (o.status >= 400 && !isOpenAiError(o.body)) problems.push(`${req.kind} → ${o.status} without an OpenAI error body: ${o.body.slice(0, 200)}`);
  }
  const statuses = countStatuses(outcomes.map((o) => o.status));
  t.diagnostic(`malformed requests tried: ${requests.length}; statuses: ${JSON.stringify(statuses)}`);
  for (const [kind, counts] of Object.entries(byKind)) t.diagnostic(`  ${kind}: ${JSON.stringify(counts)}`);
  assert.deepEqual(problems.slice(0, 10), []);
  assert.equal(outcomes.filter((o) => o.status === 413).length >= requests.filter((r) => r.kind === '10MB-body').length, true, '10 MB bodies get 413');

  // Still up, still serving, nothing left behind.
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  const ok = await fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL, prompt: 'still there?', max_tokens: 4, ignore_eos: true }) });
  assert.equal(ok.status, 200);
  await waitForIdle(server.scheduler);
  assert.equal(server.scheduler.liveSequenceMemory, 0);
});

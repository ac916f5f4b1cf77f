/**
 * The bench's own streaming client: sends one OpenAI-style request with `stream: true` and times
 * every SSE chunk as it arrives. autocannon sees a response only when it ends; token timings
 * (time to first token, gaps between tokens) need a client that reads the stream.
 *
 * Built on node:http with a keep-alive agent rather than fetch: with hundreds of concurrent streams
 * on the same small machine as the server, the client's own cost per chunk matters.
 */
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';

export type Endpoint = 'chat' | 'completions';

export const ENDPOINT_PATHS: Record<Endpoint, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
};

/** Where requests go. One per server under test (ours, the baseline). */
export interface Target {
  /** "http://127.0.0.1:8000" (no trailing slash). */
  baseUrl: string;
  /** Model id sent in every body. */
  model: string;
  apiKey: string | null;
  /** Shared keep-alive agent; `closeTarget` destroys it. */
  agent: http.Agent;
  /** A streamed request that receives nothing for this long fails with errorKind "timeout". */
  idleTimeoutMs: number;
}

export function createTarget(baseUrl: string, model: string, apiKey: string | null, idleTimeoutMs = 300_000): Target {
  const url = new URL(baseUrl);
  const options = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 };
  const agent = url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
  return { baseUrl: baseUrl.replace(/\/+$/, ''), model, apiKey, agent, idleTimeoutMs };
}

export function closeTarget(target: Target): void {
  target.agent.destroy();
}

/** What one streamed request did. Times are ms from just before the request was written. */
export interface StreamRecord {
  ok: boolean;
  /** HTTP status; null when the connection failed before a response. */
  status: number | null;
  /** Error class for the errors table: the status ("429"), "stream-error", "network", "protocol", "timeout". */
  errorKind: string | null;
  errorMessage: string | null;
  /** performance.now() when the request started (to order records and compute the run's span). */
  startedAtMs: number;
  /** First chunk that carried text. null when none did. */
  ttftMs: number | null;
  /** Until `[DONE]` (or the error). */
  e2eMs: number;
  /** Arrival time of every chunk that carried text, relative to the start. */
  chunkTimesMs: number[];
  /** usage.completion_tokens when the server sent usage, else the number of text chunks. */
  outputTokens: number;
  /** usage.prompt_tokens when the server sent usage. */
  promptTokens: number | null;
  finishReason: string | null;
}

interface ChunkChoice {
  text?: unknown;
  delta?: { content?: unknown };
  finish_reason?: unknown;
}

interface ChunkPayload {
  choices?: ChunkChoice[];
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
  error?: { message?: unknown };
}

/**
 * Send `body` (without `model`/`stream`, which are filled in) to `endpoint` and read its SSE
 * stream to the end. Never throws: failures come back as a record with ok = false.
 */
export function sendStreamingRequest(target: Target, endpoint: Endpoint, body: Record<string, unknown>): Promise<StreamRecord> {
  const payload = JSON.stringify({
    ...body,
    model: target.model,
    stream: true,
    stream_options: { include_usage: true },
  });
  const url = new URL(target.baseUrl + ENDPOINT_PATHS[endpoint]);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    accept: 'text/event-stream',
    'content-length': Buffer.byteLength(payload),
  };
  if (target.apiKey !== null) headers.authorization = `Bearer ${target.apiKey}`;
  const request = url.protocol === 'https:' ? https.request : http.request;

  return new Promise((resolve) => {
    const startedAtMs = performance.now();
    const record: StreamRecord = {
      ok: false,
      status: null,
      errorKind: null,
      errorMessage: null,
      startedAtMs,
      ttftMs: null,
      e2eMs: 0,
      chunkTimesMs: [],
      outputTokens: 0,
      promptTokens: null,
      finishReason: null,
    };
    let settled = false;
    let sawDone = false;
    let usageTokens: number | null = null;
    const finish = (errorKind: string | null, errorMessage: string | null): void => {
      if (settled) return;
      settled = true;
      record.e2eMs = performance.now() - startedAtMs;
      record.errorKind = errorKind;
      record.errorMessage = errorMessage;
      record.ok = errorKind === null;
      record.outputTokens = usageTokens ?? record.chunkTimesMs.length;
      resolve(record);
    };

    const onEvent = (data: string): void => {
      if (data === '[DONE]') {
        sawDone = true;
        return;
      }
      let chunk: ChunkPayload;
      try {
        chunk = JSON.parse(data) as ChunkPayload;
      } catch {
        finish('protocol', `unparseable SSE data: ${data.slice(0, 120)}`);
        return;
      }
      if (chunk.error) {
        finish('stream-error', String(chunk.error.message ?? 'error event in stream'));
        return;
      }
      const choice = chunk.choices?.[0];
      if (choice) {
        const text = typeof choice.text === 'string' ? choice.text : choice.delta?.content;
        if (typeof text === 'string' && text.length > 0) {
          const atMs = performance.now() - startedAtMs;
          if (record.ttftMs === null) record.ttftMs = atMs;
          record.chunkTimesMs.push(atMs);
        }
        if (typeof choice.finish_reason === 'string') record.finishReason = choice.finish_reason;
      }
      const usage = chunk.usage;
      if (usage) {
        if (typeof usage.completion_tokens === 'number') usageTokens = usage.completion_tokens;
        if (typeof usage.prompt_tokens === 'number') record.promptTokens = usage.prompt_tokens;
      }
    };

    const req = request(url, { method: 'POST', headers, agent: target.agent }, (res) => {
      record.status = res.statusCode ?? null;
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (part: string) => {
          if (text.length < 2000) text += part;
        });
        res.on('end', () => finish(String(res.statusCode), errorMessageOf(text)));
        res.on('error', (err) => finish('network', err.message));
        return;
      }
      let buffer = '';
      res.on('data', (part: string) => {
        buffer += part;
        // SSE events end with a blank line; the last piece may be an incomplete event.
        let end: number;
        while (!settled && (end = findEventEnd(buffer)) >= 0) {
          const rawEvent = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^(\r?\n){2}/, '');
          const data = eventData(rawEvent);
          if (data !== null) onEvent(data);
        }
      });
      res.on('end', () => {
        if (sawDone) finish(null, null);
        else finish('protocol', 'stream ended without [DONE]');
      });
      res.on('error', (err) => finish('network', err.message));
      res.on('aborted', () => finish('network', 'response aborted'));
    });
    req.on('error', (err) => finish('network', err.message));
    // Idle, not total: a long answer that keeps streaming is fine, a silent server is not.
    req.setTimeout(target.idleTimeoutMs, () => {
      finish('timeout', `nothing received for ${target.idleTimeoutMs} ms`);
      req.destroy();
    });
    req.end(payload);
  });
}

function findEventEnd(buffer: string): number {
  const lf = buffer.indexOf('\n\n');
  const crlf = buffer.indexOf('\r\n\r\n');
  if (lf < 0) return crlf;
  if (crlf < 0) return lf;
  return Math.min(lf, crlf);
}

/** The joined `data:` lines of one SSE event; null for comment-only or empty events. */
function eventData(rawEvent: string): string | null {
  const lines: string[] = [];
  for (const line of rawEvent.split(/\r?\n/)) {
    if (line.startsWith('data:')) lines.push(line.slice(line.charAt(5) === ' ' ? 6 : 5));
  }
  return lines.length > 0 ? lines.join('\n') : null;
}

/** The OpenAI error body's message when there is one, else the raw text. */
function errorMessageOf(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message;
  } catch {
    // not JSON: keep the raw text
  }
  return text.slice(0, 300);
}

/**
 * A one-off GET on its own connection (closed afterwards, so nothing keeps the bench process
 * alive once the run is over). Resolves with the status and body; rejects on network errors.
 */
export function getOnce(url: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  const parsed = new URL(url);
  const request = parsed.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(parsed, { method: 'GET', headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (part: string) => (body += part));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * A stand-in OpenAI-style server for the bench's tests: streams `max_tokens` chunks ("tok0 ",
 * "tok1 ", ...) for chat and completions, answers non-streamed requests, and records what it was
 * sent. Lets the harness be tested without the real server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TinyServerOptions {
  modelId?: string;
  /** Listen here instead of on a free port. */
  port?: number;
  /** Status to answer every /v1 request with instead of 200 (an OpenAI error body is sent). */
  failWithStatus?: number;
  /** Write each SSE event in two halves, to test reassembly across reads. */
  splitEvents?: boolean;
  /** End the stream without the [DONE] event. */
  omitDone?: boolean;
  /** Send an error event after this many tokens. */
  errorAfterTokens?: number;
  /** Omit the usage chunk even when asked for it. */
  omitUsage?: boolean;
  /** Send the stream's headers, then nothing. */
  hangAfterHeaders?: boolean;
}

export interface TinyServer {
  baseUrl: string;
  /** Parsed bodies of every /v1 POST, in arrival order. */
  bodies: Array<Record<string, unknown>>;
  /** Most /v1 requests that were open at the same time. */
  maxOpenRequests: number;
  close(): Promise<void>;
}

export async function startTinyServer(options: TinyServerOptions = {}): Promise<TinyServer> {
  const modelId = options.modelId ?? 'tiny-model';
  const bodies: Array<Record<string, unknown>> = [];
  let open = 0;
  const state = { maxOpenRequests: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/health' || req.url === '/ready')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: modelId, object: 'model' }] }));
      return;
    }
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (part: string) => (raw += part));
    req.on('end', () => {
      open += 1;
      state.maxOpenRequests = Math.max(state.maxOpenRequests, open);
      res.on('close', () => (open -= 1));
      const body = JSON.parse(raw) as Record<string, unknown>;
      bodies.push(body);
      if (options.failWithStatus !== undefined) {
        res.writeHead(options.failWithStatus, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `refused with ${options.failWithStatus}`, type: 'test', param: null, code: null } }));
        return;
      }
      const chat = req.url === '/v1/chat/completions';
      const maxTokens = typeof body.max_tokens === 'number' ? body.max_tokens : 4;
      const pieces = Array.from({ length: maxTokens }, (_, i) => `tok${i} `);
      if (body.stream !== true) {
        const text = pieces.join('');
        const choice = chat ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'length' } : { index: 0, text, finish_reason: 'length' };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x', object: 'chat.completion', model: modelId, choices: [choice], usage: { prompt_tokens: 7, completion_tokens: maxTokens, total_tokens: 7 + maxTokens } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      if (options.hangAfterHeaders) {
        res.flushHeaders();
        return;
      }
      const events: string[] = [];
      if (chat) events.push(JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }));
      pieces.forEach((piece, i) => {
        if (options.errorAfterTokens !== undefined && i === options.errorAfterTokens) {
          events.push(JSON.stringify({ error: { message: 'engine failed', type: 'server_error' } }));
        }
        const last = i === pieces.length - 1;
        const choice = chat ? { index: 0, delta: { content: piece }, finish_reason: last ? 'length' : null } : { index: 0, text: piece, finish_reason: last ? 'length' : null };
        events.push(JSON.stringify({ choices: [choice] }));
      });
      const streamOptions = body.stream_options as { include_usage?: boolean } | undefined;
      if (streamOptions?.include_usage && !options.omitUsage) {
        events.push(JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: maxTokens, total_tokens: 7 + maxTokens } }));
      }
      if (!options.omitDone) events.push('[DONE]');
      let i = 0;
      const writeNext = (): void => {
        const data = events[i++];
        if (data === undefined) {
          res.end();
          return;
        }
        const event = `data: ${data}\n\n`;
        if (options.splitEvents) {
          const half = Math.floor(event.length / 2);
          res.write(event.slice(0, half));
          setImmediate(() => {
            res.write(event.slice(half));
            setImmediate(writeNext);
          });
        } else {
          res.write(event);
          setImmediate(writeNext);
        }
      };
      writeNext();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    bodies,
    get maxOpenRequests() {
      return state.maxOpenRequests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

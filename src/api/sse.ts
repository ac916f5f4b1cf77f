/**
 * Server-sent events as OpenAI sends them: `data: <json>\n\n` per chunk and `data: [DONE]\n\n`
 * at the end. The reply is hijacked from Fastify, so headers already set on it (CORS) are
 * copied over; writes respect backpressure, and a client that goes away is reported through
 * `onClose` at once so its request can be cancelled.
 */
import { once } from 'node:events';
import type { FastifyReply } from 'fastify';
import type { OpenAIErrorBody } from './errors.js';

export class SseWriter {
  private ended = false;
  private clientGone = false;

  constructor(private readonly reply: FastifyReply) {
    const headers: Record<string, string | number | string[]> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = v;
    reply.hijack();
    const raw = reply.raw;
    raw.on('close', () => {
      if (!raw.writableFinished) this.clientGone = true;
    });
    raw.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.flushHeaders();
  }

  /** True once the client disconnected (or the stream ended). */
  get closed(): boolean {
    return this.clientGone || this.ended || this.reply.raw.destroyed;
  }

  /** Sends one chunk; waits while the socket buffer is full. */
  async send(chunk: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  /** An error after the stream started (vLLM's shape): the error body as a data event. */
  async sendError(body: OpenAIErrorBody): Promise<void> {
    await this.write(`data: ${JSON.stringify(body)}\n\n`);
  }

  /** `data: [DONE]` and end of response. */
  done(): void {
    if (this.closed) return;
    this.ended = true;
    this.reply.raw.end('data: [DONE]\n\n');
  }

  /** Ends without [DONE] (client gone, or nothing more can be sent). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.reply.raw.destroyed) this.reply.raw.end();
  }

  private async write(text: string): Promise<void> {
    if (this.closed) return;
    const raw = this.reply.raw;
    if (!raw.write(text)) {
      // Wait for the buffer to drain, or for the client to go away.
      await Promise.race([once(raw, 'drain'), once(raw, 'close')]);
    }
  }
}

/**
 * Calls `onGone` when the client disconnects before the response is complete (streaming or not),
 * so the request's sequences leave the batch at once.
 */
/** A signal that aborts when the client goes away before the response is finished. */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const gone = () => controller.abort(new DOMException('the client closed the request', 'AbortError'));
  // Gone already (while the body was read): the 'close' event has fired and will not fire again.
  if (reply.raw.destroyed || reply.raw.socket?.destroyed === true) gone();
  else onClientGone(reply, gone);
  return controller.signal;
}

export function onClientGone(reply: FastifyReply, onGone: () => void): void {
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) onGone();
  });
}

/**
 * Responses Fastify and node:http would write with their own bodies carry the OpenAI error body
 * of the catalogue: 404 unknown route, 405 wrong method (with Allow), 503 in the window after
 * close() began (with Retry-After and Connection: close), and malformed HTTP / oversized headers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import inject from 'light-my-request';
import { buildTestApp } from '../../helpers/build-test-app.js';

function assertOpenAIError(body: unknown, type: string, code: string): void {
  const error = (body as { error: Record<string, unknown> }).error;
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(error.type, type);
  assert.equal(error.code, code);
  assert.equal(typeof error.message, 'string');
}

test('a known path asked with another method is 405 with Allow; unknown paths stay 404', async () => {
  const { app } = buildTestApp();
  const getChat = await app.inject({ method: 'GET', url: '/v1/chat/completions' });
  assert.equal(getChat.statusCode, 405);
  assert.equal(getChat.headers.allow, 'POST');
  assertOpenAIError(getChat.json(), 'invalid_request_error', 'method_not_allowed');

  const postModels = await app.inject({ method: 'POST', url: '/v1/models?x=1', payload: {} });
  assert.equal(postModels.statusCode, 405);
  assert.equal(postModels.headers.allow, 'GET, HEAD');
  const deleteModel = await app.inject({ method: 'DELETE', url: '/v1/models/anything' });
  assert.equal(deleteModel.statusCode, 405);
  assertOpenAIError(deleteModel.json(), 'invalid_request_error', 'method_not_allowed');

  for (const [method, url] of [['GET', '/v2/models'], ['POST', '/v1/chat'], ['PUT', '/nothing/here'], ['GET', '/v1/completions/x']] as const) {
    const res = await app.inject({ method, url });
    assert.equal(res.statusCode, 404, `${method} ${url}`);
    assertOpenAIError(res.json(), 'not_found_error', 'not_found');
  }
});

test('with CORS on (a catch-all OPTIONS route), unknown paths are still 404 and preflights still work', async () => {
  const { app } = buildTestApp({ config: { corsOrigins: ['*'] } });
  const res = await app.inject({ method: 'GET', url: '/nope' });
  assert.equal(res.statusCode, 404);
  assertOpenAIError(res.json(), 'not_found_error', 'not_found');
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/v1/chat/completions',
    headers: { origin: 'https://example.com', 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.statusCode, 204);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/chat/completions' })).statusCode, 405);
});

test('a request that arrives after close() began gets the OpenAI 503 shutting_down, not Fastify’s body', async () => {
  const { app } = buildTestApp({ config: { apiKey: ['k'], rateLimitPerMinute: 1 } });
  const during: inject.Response[] = [];
  // preClose hooks run in order after Fastify marks itself closing; ours (added by buildApp) ran first.
  app.addHook('preClose', async () => {
    // app.inject refuses once closing starts; light-my-request on app.routing is the same request path.
    for (const url of ['/v1/models', '/health', '/no-such-route']) during.push(await inject(app.routing, { method: 'GET', url }));
    during.push(await inject(app.routing, { method: 'POST', url: '/v1/chat/completions', payload: { messages: [] } }));
  });
  await app.ready();
  await app.close();
  assert.equal(during.length, 4);
  for (const res of during) {
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal(res.headers.connection, 'close');
    assert.match(String(res.headers['content-type']), /application\/json/);
    assertOpenAIError(res.json(), 'server_error', 'shutting_down');
  }
});

/** Writes raw bytes to a listening app and returns everything the server sends before closing. */
async function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
    socket.write(bytes);
  });
}

function parseRawResponse(raw: string): { status: number; headers: string; body: unknown } {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body: JSON.parse(body) };
}

test('malformed HTTP and oversized headers get OpenAI bodies from the clientError handler', async () => {
  const { app } = buildTestApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const { port } = app.server.address() as AddressInfo;
    const garbage = parseRawResponse(await rawExchange(port, 'THIS IS NOT HTTP\r\n\r\n'));
    assert.equal(garbage.status, 400);
    assert.match(garbage.headers, /content-type: application\/json/);
    assertOpenAIError(garbage.body, 'invalid_request_error', 'malformed_request');

    const bigHeader = `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
    const overflow = parseRawResponse(await rawExchange(port, bigHeader));
    assert.equal(overflow.status, 431);
    assertOpenAIError(overflow.body, 'invalid_request_error', 'request_headers_too_large');
  } finally {
    await app.close();
  }
});

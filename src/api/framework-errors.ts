/**
 * The responses Fastify and Node's HTTP server would otherwise write with their own bodies, sent
 * with the OpenAI error body of the catalogue instead:
 *   - unknown path → 404 not_found; known path, other method → 405 method_not_allowed + Allow
 *     (Fastify answers both with 404);
 *   - a request that reaches the app after close() began → 503 shutting_down + Retry-After
 *     (Fastify's return503OnClosing body is {"error":"Service Unavailable",…});
 *   - malformed HTTP, oversized headers, request timeout: written straight to the socket by the
 *     server's clientError handler (Fastify's default writes {"error":"Bad Request",…}).
 *
 * Called once by buildApp, before any route is added (the route table is collected by onRoute).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, sendApiError } from './errors.js';

interface KnownRoute {
  pattern: RegExp;
  methods: Set<string>;
}

/** A Fastify route path ("/v1/models/:model", "/files/*") as a RegExp over concrete paths. */
function routePattern(url: string): RegExp {
  let source = '';
  for (let i = 0; i < url.length; i++) {
    const c = url[i]!;
    if (c === ':' && url[i + 1] !== ':') {
      // A parameter runs to the next "/" (a regex constraint in parentheses is part of it).
      let depth = 0;
      while (i + 1 < url.length && (depth > 0 || url[i + 1] !== '/')) {
        i++;
        if (url[i] === '(') depth++;
        else if (url[i] === ')') depth--;
      }
      source += '[^/]+';
    } else if (c === ':' && url[i + 1] === ':') {
      source += ':';
      i++;
    } else if (c === '*') {
      source += '.*';
    } else {
      source += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

/** 404 for unknown paths and 405 (with Allow) for a known path asked with another method. */
function installRoutingErrors(app: FastifyInstance): void {
  const routes = new Map<string, KnownRoute>();
  app.addHook('onRoute', (route) => {
    // Catch-all routes (CORS preflight "*") exist for every path and would turn every 404 into a 405.
    if (route.url === '*' || route.url === '/*') return;
    const known = routes.get(route.url) ?? { pattern: routePattern(route.url), methods: new Set<string>() };
    for (const method of [route.method].flat()) known.methods.add(method.toUpperCase());
    routes.set(route.url, known);
  });
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = new Set<string>();
    for (const route of routes.values()) if (route.pattern.test(path)) for (const m of route.methods) allowed.add(m);
    if (allowed.size > 0 && !allowed.has(request.method)) {
      const allow = [...allowed].sort().join(', ');
      reply.header('allow', allow);
      return sendApiError(reply, new ApiError('ZMB_ERR_METHOD_NOT_ALLOWED', `method ${request.method} is not allowed on ${path} (allowed: ${allow})`));
    }
    return sendApiError(reply, new ApiError('ZMB_ERR_ROUTE_NOT_FOUND', `no route ${request.method} ${path}`));
  });
}

/**
 * Between app.close() and the listener going away, requests still arrive on open keep-alive
 * connections; they get the catalogue's 503 and the connection is closed. Runs before every
 * other onRequest hook (auth, rate limits), so a closing server never answers 401 or 429 instead.
 */
function installClosingResponse(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    return sendApiError(reply, new ApiError('ZMB_ERR_SHUTTING_DOWN', 'the server is shutting down; retry the request', null, 1));
  });
}

/** The catalogue entry for an error the HTTP parser raised before Fastify saw a request. */
function clientErrorToApiError(err: NodeJS.ErrnoException): ApiError {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new ApiError('ZMB_ERR_REQUEST_TIMEOUT', 'the request was not received in time');
  if (err.code === 'HPE_HEADER_OVERFLOW') return new ApiError('ZMB_ERR_HEADERS_TOO_LARGE', 'the request headers are larger than the server accepts');
  return new ApiError('ZMB_ERR_MALFORMED_REQUEST', 'malformed HTTP request');
}

/**
 * Fastify's clientErrorHandler (the node:http 'clientError' event): answers on the raw socket, as
 * Fastify's default does, then closes it. Nothing to answer when the peer already went away.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const apiError = clientErrorToApiError(err);
  if (socket.writable) {
    const body = JSON.stringify(apiError.toBody());
    socket.write(
      `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** Installs the routing errors and the closing response; pass clientErrorHandler to Fastify({…}) as well. */
export function installFrameworkErrors(app: FastifyInstance): void {
  installClosingResponse(app);
  installRoutingErrors(app);
}

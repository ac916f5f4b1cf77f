/**
 * The error catalogue: every error the API returns has a ZMB_ERR_* entry with its HTTP status and
 * OpenAI error `type`/`code`, and goes out as the OpenAI body {error:{message,type,param,code}}.
 * Routes and serving/ throw ApiError; the app's error handler (installErrorHandler) turns any
 * thrown value into that body, and never lets a stack trace or internal message out of a 500.
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ServingError, type ServingErrorReason } from '../serving/errors.js';

export interface ErrorDef {
  status: number;
  type: 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';
  code: string;
}

export const ERRORS = {
  ZMB_ERR_INVALID_FIELD: { status: 400, type: 'invalid_request_error', code: 'invalid_value' },
  ZMB_ERR_INVALID_JSON: { status: 400, type: 'invalid_request_error', code: 'invalid_json' },
  ZMB_ERR_UNSUPPORTED_PARAMETER: { status: 400, type: 'invalid_request_error', code: 'unsupported_parameter' },
  ZMB_ERR_CONTEXT_LENGTH: { status: 400, type: 'invalid_request_error', code: 'context_length_exceeded' },
  ZMB_ERR_NO_CHAT_TEMPLATE: { status: 400, type: 'invalid_request_error', code: 'chat_template_missing' },
  ZMB_ERR_CHAT_TEMPLATE: { status: 400, type: 'invalid_request_error', code: 'chat_template_error' },
  ZMB_ERR_INVALID_API_KEY: { status: 401, type: 'authentication_error', code: 'invalid_api_key' },
  ZMB_ERR_MODEL_NOT_FOUND: { status: 404, type: 'not_found_error', code: 'model_not_found' },
  ZMB_ERR_ROUTE_NOT_FOUND: { status: 404, type: 'not_found_error', code: 'not_found' },
  ZMB_ERR_METHOD_NOT_ALLOWED: { status: 405, type: 'invalid_request_error', code: 'method_not_allowed' },
  ZMB_ERR_MALFORMED_REQUEST: { status: 400, type: 'invalid_request_error', code: 'malformed_request' },
  ZMB_ERR_REQUEST_TIMEOUT: { status: 408, type: 'invalid_request_error', code: 'request_timeout' },
  ZMB_ERR_HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error', code: 'request_headers_too_large' },
  ZMB_ERR_BODY_TOO_LARGE: { status: 413, type: 'invalid_request_error', code: 'request_too_large' },
  ZMB_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'invalid_request_error', code: 'unsupported_media_type' },
  // nginx's 499: only logged and counted, the client is gone and never sees it.
  ZMB_ERR_CLIENT_CLOSED: { status: 499, type: 'invalid_request_error', code: 'client_closed_request' },
  ZMB_ERR_OVERLOADED: { status: 429, type: 'rate_limit_error', code: 'server_overloaded' },
  ZMB_ERR_RATE_LIMITED: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  ZMB_ERR_INTERNAL: { status: 500, type: 'server_error', code: 'internal_error' },
  ZMB_ERR_GENERATION_FAILED: { status: 500, type: 'server_error', code: 'generation_failed' },
  ZMB_ERR_SHUTTING_DOWN: { status: 503, type: 'server_error', code: 'shutting_down' },
  ZMB_ERR_NOT_READY: { status: 503, type: 'server_error', code: 'not_ready' },
  ZMB_ERR_ENGINE_FAILED: { status: 503, type: 'server_error', code: 'engine_failed' },
} as const satisfies Record<string, ErrorDef>;

export type ErrorName = keyof typeof ERRORS;

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error meant for the client: its message is shown as is. */
export class ApiError extends Error {
  readonly def: ErrorDef;

  constructor(
    readonly errorName: ErrorName,
    message: string,
    readonly param: string | null = null,
    /** Sent as Retry-After (seconds) with 429/503. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ApiError';
    this.def = ERRORS[errorName];
  }

  get status(): number {
    return this.def.status;
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.def.type, param: this.param, code: this.def.code } };
  }
}

/** Fastify's own client errors (bad JSON, body too large, …) mapped onto the catalogue. */
function fromFastifyError(err: FastifyError): ApiError | null {
  const status = err.statusCode ?? 0;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) {
    return new ApiError('ZMB_ERR_BODY_TOO_LARGE', 'request body is larger than the server accepts');
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || status === 415) {
    return new ApiError('ZMB_ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported Content-Type: send application/json');
  }
  if (
    err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    err instanceof SyntaxError ||
    (status === 400 && /JSON/i.test(err.message))
  ) {
    return new ApiError('ZMB_ERR_INVALID_JSON', `request body is not valid JSON: ${err.message}`);
  }
  if (status >= 400 && status < 500) {
    return new ApiError('ZMB_ERR_INVALID_FIELD', err.message);
  }
  return null;
}

const SERVING_ERRORS: Record<ServingErrorReason, ErrorName> = {
  invalid: 'ZMB_ERR_INVALID_FIELD',
  context_length: 'ZMB_ERR_CONTEXT_LENGTH',
  no_chat_template: 'ZMB_ERR_NO_CHAT_TEMPLATE',
  chat_template: 'ZMB_ERR_CHAT_TEMPLATE',
  overloaded: 'ZMB_ERR_OVERLOADED',
  shutting_down: 'ZMB_ERR_SHUTTING_DOWN',
  engine_failed: 'ZMB_ERR_ENGINE_FAILED',
  generation_failed: 'ZMB_ERR_GENERATION_FAILED',
  cancelled: 'ZMB_ERR_CLIENT_CLOSED',
};

/** Any thrown value → the ApiError to send. Unknown errors become a generic 500. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ServingError) {
    // generation_failed keeps its generic message: the cause (engine detail) is only logged.
    return new ApiError(SERVING_ERRORS[err.reason], err.message, err.param, err.retryAfterSeconds);
  }
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const mapped = fromFastifyError(err as FastifyError);
    if (mapped) return mapped;
  }
  return new ApiError('ZMB_ERR_INTERNAL', 'internal server error');
}

export function sendApiError(reply: FastifyReply, err: ApiError): FastifyReply {
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfterSeconds))));
  return reply.status(err.status).type('application/json').send(err.toBody());
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500) request.log.error({ err, errorCode: apiError.errorName }, 'request failed');
    else request.log.info({ errorCode: apiError.errorName, status: apiError.status }, apiError.message);
    return sendApiError(reply, apiError);
  });
}

/**
 * zod → ApiError: the first issue becomes a 400 whose message and `param` name the field
 * ("messages[0].content"), as OpenAI does.
 */
import type { z } from 'zod';
import { ApiError } from '../errors.js';

export function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out.length === 0 ? String(part) : `.${String(part)}`;
  }
  return out;
}

export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('ZMB_ERR_INVALID_JSON', 'request body must be a JSON object');
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issuePath(issue.path);
  throw new ApiError('ZMB_ERR_INVALID_FIELD', param ? `${param}: ${issue.message}` : issue.message, param || null);
}

export function invalid(param: string, message: string): ApiError {
  return new ApiError('ZMB_ERR_INVALID_FIELD', `${param}: ${message}`, param);
}

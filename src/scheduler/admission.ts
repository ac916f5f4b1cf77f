/**
 * Whether a request may enter the waiting queue at all, checked by Scheduler.submit before any
 * state is created: well-formed n / maxTokens, a prompt that fits max_model_len and the KV pool
 * even alone, and room in the waiting queue (else 'overloaded' with a Retry-After estimate).
 * Pure: reads the cache's sizes and the queue length, mutates nothing.
 */
import type { HybridCache } from '../cache/index.js';
import { SchedulerRejection, type GenerationRequest } from './types.js';

export interface AdmissionLimits {
  maxModelLen: number;
  maxWaiting: number;
  /** Sequences waiting now. */
  waitingCount: number;
  /** Moving average of a request's life in seconds (for Retry-After). */
  requestSecondsEma: number;
}

/** Throws RangeError for a malformed request, SchedulerRejection for one that cannot be queued. */
export function checkAdmissible(request: GenerationRequest, cache: HybridCache, limits: AdmissionLimits): void {
  const promptLength = request.promptTokens.length;
  if (!(Number.isInteger(request.n) && request.n >= 1)) throw new RangeError(`n must be a positive integer, got ${request.n}`);
  if (!(Number.isInteger(request.maxTokens) && request.maxTokens >= 0)) throw new RangeError(`maxTokens must be an integer ≥ 0, got ${request.maxTokens}`);
  if (promptLength === 0) throw new SchedulerRejection('the prompt must contain at least one token', 'too_long');
  if (promptLength > limits.maxModelLen) {
    throw new SchedulerRejection(`the prompt has ${promptLength} tokens, more than max_model_len (${limits.maxModelLen})`, 'too_long');
  }
  const promptPages = cache.pages.pagesFor(promptLength);
  if (promptPages > cache.pages.pageCount) {
    throw new SchedulerRejection(
      `the prompt needs ${promptPages} KV pages (${promptLength} tokens), the KV cache holds ${cache.pages.pageCount} pages (${cache.pages.pageCount * cache.tokensPerPage} tokens)`,
      'too_long',
    );
  }
  if (limits.waitingCount >= limits.maxWaiting) {
    const perSlot = limits.waitingCount / Math.max(1, cache.slots.slotCount);
    const retryAfterSeconds = Math.min(60, Math.max(1, Math.ceil(perSlot * limits.requestSecondsEma)));
    throw new SchedulerRejection(`too many waiting requests (${limits.waitingCount}, max_waiting is ${limits.maxWaiting})`, 'overloaded', retryAfterSeconds);
  }
}

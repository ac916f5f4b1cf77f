/**
 * One request's life between the API and the scheduler: submit the prompt's token ids, turn the
 * scheduler's token events into text deltas per completion (detokenize, stop strings, logprob
 * text), finish sequences whose stop string matched, and report usage and timings.
 *
 * Called by api/ routes: `start()` submits at once (so overload and length errors surface before
 * any response byte is sent) and returns a stream of ServingEvents. Leaving the stream early or
 * calling `abort()` cancels every sequence of the request at the scheduler.
 */
import { SchedulerRejection, type GenerationHandle, type GenerationScheduler, type SequenceEvent } from '../scheduler/types.js';
import type { TextTokenizer } from '../tokenizer/index.js';
import { ServingError } from './errors.js';
import { OutputProcessor, logprobInfo } from './output-processor.js';
import type { GenerateParams, ServingEvent, ServingFinishReason, ServingObserver } from './types.js';

export interface GenerationStream extends AsyncIterable<ServingEvent> {
  readonly requestId: string;
  /** Cancel every completion now (client went away). Idempotent. */
  abort(): void;
}

export interface GenerationServiceDeps {
  scheduler: GenerationScheduler;
  tokenizer: TextTokenizer;
  observer?: ServingObserver;
  /** Clock for timings (ms). */
  now?: () => number;
}

function rejectionToServingError(err: SchedulerRejection): ServingError {
  switch (err.reason) {
    case 'overloaded':
      return new ServingError('overloaded', err.message || 'server overloaded: too many waiting requests', null, err.retryAfterSeconds ?? 1);
    case 'too_long':
      return new ServingError('context_length', err.message, 'messages');
    case 'engine_failed':
      return new ServingError('engine_failed', err.message);
    default:
      return new ServingError('shutting_down', err.message || 'server is shutting down', null, err.retryAfterSeconds);
  }
}

export class GenerationService {
  private readonly now: () => number;

  constructor(private readonly deps: GenerationServiceDeps) {
    this.now = deps.now ?? (() => performance.now());
  }

  start(params: GenerateParams): GenerationStream {
    const startedAt = this.now();
    let handle: GenerationHandle;
    try {
      handle = this.deps.scheduler.submit({
        requestId: params.requestId,
        promptTokens: Int32Array.from(params.promptTokens),
        // max_tokens 0 (echo scoring) still samples the one token a prefill yields; it is dropped below.
        maxTokens: Math.max(1, params.maxTokens),
        minTokens: params.minTokens,
        n: params.n,
        sampling: params.sampling,
        stopTokenIds: [...params.stopTokenIds],
        ignoreEos: params.ignoreEos,
        promptLogprobs: params.promptLogprobs,
      });
    } catch (err) {
      if (err instanceof SchedulerRejection) throw rejectionToServingError(err);
      throw err;
    }
    const cancel = { requested: false };
    const events = this.run(handle, params, startedAt, cancel);
    return {
      requestId: params.requestId,
      abort: () => {
        cancel.requested = true;
        handle.abort();
      },
      [Symbol.asyncIterator]: () => events,
    };
  }

  private async *run(
    handle: GenerationHandle,
    params: GenerateParams,
    startedAt: number,
    cancel: { requested: boolean },
  ): AsyncGenerator<ServingEvent> {
    const { tokenizer, observer } = this.deps;
    const endTokenIds = new Set<number>([...(params.ignoreEos ? [] : tokenizer.eosTokenIds), ...params.stopTokenIds]);
    const userStopIds = new Set(params.stopTokenIds);
    const processors = Array.from(
      { length: params.n },
      () =>
        new OutputProcessor(tokenizer, params.promptTokens, {
          stop: params.stop,
          includeStopStrInOutput: params.includeStopStrInOutput,
          skipSpecialTokens: params.skipSpecialTokens,
          minTokens: params.minTokens,
          endTokenIds,
        }),
    );
    const dropOutput = params.maxTokens === 0;
    const wantLogprobs = params.logprobs !== null;
    const finishReasons: ServingFinishReason[] = [];
    let firstTokenAt: number | null = null;
    let lastTokenAt = 0;
    let tokensSeen = 0;
    let outcome: 'finished' | 'aborted' | 'error' = 'aborted';
    const iterator = handle[Symbol.asyncIterator]();

    const delta = (index: number, proc: OutputProcessor, text: string): ServingEvent | null => {
      if (text.length === 0 && (!wantLogprobs || proc.pendingTokenIds.length === 0)) return null;
      const pending = proc.takePending();
      return { kind: 'delta', index, text, tokenIds: pending.tokenIds, logprobs: wantLogprobs ? pending.logprobs : null };
    };

    try {
      let finished = 0;
      while (finished < params.n) {
        const next = await iterator.next();
        if (next.done || cancel.requested) break;
        const event: SequenceEvent = next.value;
        if (event.kind === 'prompt-logprobs') {
          yield { kind: 'prompt-logprobs', entries: [null, ...event.logprobs.map((lp) => logprobInfo(tokenizer, lp))] };
          continue;
        }
        const proc = processors[event.index];
        if (!proc || proc.done) continue;
        if (event.kind === 'token') {
          const t = this.now();
          firstTokenAt ??= t;
          lastTokenAt = t;
          tokensSeen++;
          if (dropOutput) continue;
          const step = proc.pushToken(event.tokenId, event.logprob);
          const d = delta(event.index, proc, step.text);
          if (step.stop !== null) {
            // A stop string matched: the sequence leaves the batch now, its held text is dropped.
            proc.done = true;
            handle.finish(event.index);
            if (d) yield d;
            finishReasons.push('stop');
            finished++;
            yield { kind: 'finished', index: event.index, finishReason: 'stop', stopReason: step.stop, completionTokens: proc.completionTokens };
          } else if (d) {
            yield d;
          }
          continue;
        }
        // event.kind === 'finished'
        if (event.reason === 'error') {
          throw new ServingError('generation_failed', 'the engine failed while generating this request', null, undefined, { cause: event.error });
        }
        if (event.reason === 'abort') {
          if (cancel.requested) break; // our own abort (client gone): end quietly
          throw new ServingError('shutting_down', 'the request was cancelled by the server (shutting down)');
        }
        proc.done = true;
        const tail = dropOutput ? { text: '', stop: null } : proc.finish();
        const d = delta(event.index, proc, tail.text);
        if (d) yield d;
        const finishReason: ServingFinishReason = dropOutput ? 'length' : tail.stop !== null || event.reason === 'stop' ? 'stop' : 'length';
        const stopReason =
          tail.stop ?? (event.stopTokenId !== undefined && userStopIds.has(event.stopTokenId) ? event.stopTokenId : null);
        finishReasons.push(finishReason);
        finished++;
        yield { kind: 'finished', index: event.index, finishReason, stopReason, completionTokens: dropOutput ? 0 : proc.completionTokens };
      }
      outcome = finished === params.n ? 'finished' : 'aborted';
    } catch (err) {
      outcome = 'error';
      throw err;
    } finally {
      // Leaving early (client gone, consumer stopped, error) cancels every sequence at once.
      if (outcome !== 'finished') handle.abort();
      await iterator.return?.();
      const end = this.now();
      observer?.onRequestDone({
        promptTokens: params.promptTokens.length,
        completionTokens: processors.reduce((sum, p) => sum + (dropOutput ? 0 : p.completionTokens), 0),
        timeToFirstTokenMs: firstTokenAt === null ? null : firstTokenAt - startedAt,
        timePerOutputTokenMs: firstTokenAt !== null && tokensSeen > 1 ? (lastTokenAt - firstTokenAt) / (tokensSeen - 1) : null,
        e2eMs: end - startedAt,
        outcome,
        finishReasons,
      });
    }
  }
}

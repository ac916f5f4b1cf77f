/**
 * A GenerationScheduler test double for serving/ and api/ unit tests: each submitted request gets
 * its output tokens from a script (a function of the request and completion index), delivered one
 * event per macrotask, with eos / length endings as a real scheduler would report them. It records
 * every request and whether it was finished early or aborted, so tests can check cancellation.
 */
import type { TokenLogprob } from '../../src/engine/engine.js';
import {
  SchedulerRejection,
  type GenerationHandle,
  type GenerationRequest,
  type GenerationScheduler,
  type SchedulerStats,
  type SequenceEvent,
} from '../../src/scheduler/types.js';

export interface ScriptedRecord {
  request: GenerationRequest;
  aborted: boolean;
  finishedEarly: Set<number>;
  /** Events delivered so far. */
  delivered: number;
}

export interface ScriptOptions {
  /** Tokens completion `index` would produce if nothing stopped it (eos included where it should end). */
  tokens: (request: GenerationRequest, index: number) => number[];
  eosTokenIds?: number[];
  /** Throw this at submit (e.g. an overloaded rejection). */
  reject?: () => SchedulerRejection | null;
  /** Fail completion 0 with an engine error after this many tokens. */
  failAfterTokens?: number;
  /** Wait this long between events (ms); 0 = next macrotask. */
  delayMs?: number;
}

function fakeLogprob(tokenId: number, topN: number | null): TokenLogprob | null {
  if (topN === null) return null;
  const ids = Int32Array.from({ length: topN }, (_, i) => (i === 0 ? tokenId : tokenId + i));
  const lps = Float32Array.from({ length: topN }, (_, i) => -0.5 - i);
  return { tokenId, logprob: -0.5, top: topN > 0 ? { tokenIds: ids, logprobs: lps } : null };
}

export class ScriptedScheduler implements GenerationScheduler {
  readonly records: ScriptedRecord[] = [];
  draining = false;
  failed = false;

  constructor(private readonly script: ScriptOptions) {}

  submit(request: GenerationRequest): GenerationHandle {
    const rejection = this.script.reject?.() ?? null;
    if (rejection) throw rejection;
    if (this.draining) throw new SchedulerRejection('shutting down', 'shutting_down');
    const record: ScriptedRecord = { request, aborted: false, finishedEarly: new Set(), delivered: 0 };
    this.records.push(record);
    const script = this.script;
    const eos = new Set([...(request.ignoreEos ? [] : (script.eosTokenIds ?? [2])), ...(request.stopTokenIds ?? [])]);
    const events: SequenceEvent[] = [];
    if (request.promptLogprobs !== null) {
      events.push({
        kind: 'prompt-logprobs',
        logprobs: Array.from(request.promptTokens.slice(1), (id) => fakeLogprob(id, request.promptLogprobs)!),
      });
    }
    // Interleave completions token by token, like a batch would.
    const outputs = Array.from({ length: request.n }, (_, i) => script.tokens(request, i));
    const ended = new Array<boolean>(request.n).fill(false);
    for (let pos = 0; ended.includes(false); pos++) {
      for (let i = 0; i < request.n; i++) {
        if (ended[i]) continue;
        if (i === 0 && script.failAfterTokens !== undefined && pos === script.failAfterTokens) {
          events.push({ kind: 'finished', index: i, reason: 'error', error: new Error('engine exploded: secret detail') });
          ended[i] = true;
          continue;
        }
        const token = outputs[i]![pos];
        if (token === undefined || pos >= request.maxTokens) {
          events.push({ kind: 'finished', index: i, reason: 'length' });
          ended[i] = true;
          continue;
        }
        events.push({ kind: 'token', index: i, tokenId: token, logprob: fakeLogprob(token, request.sampling.logprobs) });
        if (eos.has(token) && pos + 1 >= (request.minTokens ?? 0)) {
          events.push({ kind: 'finished', index: i, reason: 'stop', stopTokenId: token });
          ended[i] = true;
        } else if (pos + 1 >= request.maxTokens) {
          events.push({ kind: 'finished', index: i, reason: 'length' });
          ended[i] = true;
        }
      }
    }
    const delayMs = script.delayMs ?? 0;
    const handle: GenerationHandle = {
      requestId: request.requestId,
      finish(index: number) {
        record.finishedEarly.add(index);
      },
      abort() {
        record.aborted = true;
      },
      async *[Symbol.asyncIterator]() {
        const completed = new Set<number>();
        try {
          for (const event of events) {
            await new Promise((r) => setTimeout(r, delayMs));
            if (record.aborted) return;
            if (event.kind !== 'prompt-logprobs' && record.finishedEarly.has(event.index)) continue;
            record.delivered++;
            if (event.kind === 'finished') completed.add(event.index);
            yield event;
          }
        } finally {
          // Leaving the iteration before every completion ended cancels the request (the contract).
          for (const i of record.finishedEarly) completed.add(i);
          if (completed.size < request.n) record.aborted = true;
        }
      },
    };
    return handle;
  }

  stats(): SchedulerStats {
    const running = this.records.filter((r) => !r.aborted).length;
    return { running, waiting: 0, preemptedTotal: 0, slotsUsed: running, slotsTotal: 8, pagesUsed: 0, pagesTotal: 64 };
  }

  async drain(): Promise<void> {
    this.draining = true;
  }
}

/**
 * DataParallelScheduler: several engine replicas on one host (one per GPU with --data-parallel N),
 * each with its own Scheduler, cache and step loop, behind the one GenerationScheduler that
 * serving/ sees. Replicas share nothing, so a request lives its whole life on the replica that
 * admitted it; only the choice of replica is made here.
 *
 * Routing: least loaded first, load = sequences running + waiting; ties go to the replica with
 * fewer KV pages in use (longer contexts cost more per step), then to the lower index. A replica
 * that refuses (its waiting queue is full, or it stopped serving after a fatal engine error) is
 * skipped and the next one is tried, so one dead GPU does not take the server down with it; the
 * request is refused only when every replica refuses. 'too_long' is the same on every replica
 * (they share the options) and is thrown at once.
 *
 * Called by src/cli/serve.ts (start, drain, close) and serving/ (submit, stats); it mutates nothing
 * but the replicas it calls.
 */
import { SchedulerRejection, type GenerationHandle, type GenerationRequest, type GenerationScheduler, type SchedulerStats } from './types.js';

/** What start-up and shutdown need of a scheduler; Scheduler and DataParallelScheduler both fit. */
export interface ServingScheduler extends GenerationScheduler {
  start(): Promise<void>;
  close(): Promise<void>;
  /** Sequences still holding cache memory (zero once every request has ended). */
  readonly liveSequenceMemory: number;
}

/** Replica indexes, best choice first. Exported for tests. */
export function replicaOrder(stats: readonly SchedulerStats[]): number[] {
  const load = stats.map((s) => s.running + s.waiting);
  return stats
    .map((_, i) => i)
    .sort((a, b) => load[a]! - load[b]! || stats[a]!.pagesUsed - stats[b]!.pagesUsed || a - b);
}

export class DataParallelScheduler implements ServingScheduler {
  constructor(readonly replicas: readonly ServingScheduler[]) {
    if (replicas.length === 0) throw new RangeError('DataParallelScheduler needs at least one replica');
  }

  async start(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.start()));
  }

  submit(request: GenerationRequest): GenerationHandle {
    let refusal: SchedulerRejection | null = null;
    for (const index of replicaOrder(this.replicas.map((r) => r.stats()))) {
      try {
        return this.replicas[index]!.submit(request);
      } catch (err) {
        if (!(err instanceof SchedulerRejection) || err.reason === 'too_long') throw err;
        // Prefer reporting overload (with the soonest Retry-After) over a stopped replica.
        if (refusal === null || betterRefusal(err, refusal)) refusal = err;
      }
    }
    throw refusal!;
  }

  stats(): SchedulerStats {
    const total: SchedulerStats = { running: 0, waiting: 0, preemptedTotal: 0, slotsUsed: 0, slotsTotal: 0, pagesUsed: 0, pagesTotal: 0 };
    for (const r of this.replicas) {
      const s = r.stats();
      for (const key of Object.keys(total) as (keyof SchedulerStats)[]) total[key] += s[key];
    }
    return total;
  }

  /** Every replica stops admitting at once and drains against the same deadline. */
  async drain(deadlineMs: number): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.drain(deadlineMs)));
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.close()));
  }

  /** Failed only when every replica has failed: a live one keeps the process worth routing to. */
  get failed(): boolean {
    return this.replicas.every((r) => r.failed);
  }

  get liveSequenceMemory(): number {
    return this.replicas.reduce((sum, r) => sum + r.liveSequenceMemory, 0);
  }
}

function betterRefusal(candidate: SchedulerRejection, current: SchedulerRejection): boolean {
  if (candidate.reason !== current.reason) return candidate.reason === 'overloaded';
  return (candidate.retryAfterSeconds ?? Infinity) < (current.retryAfterSeconds ?? Infinity);
}

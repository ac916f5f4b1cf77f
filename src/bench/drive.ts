/**
 * Sends a list of requests with a concurrency cap and (optionally) planned send times, and
 * collects what each did. Closed loop (no send times): `concurrency` requests in flight at all
 * times. Open loop (send times from random.ts): each request leaves at its time or, when the cap
 * is reached, as soon as a request ends — the cap is what keeps a client from opening thousands of
 * sockets against a server that fell behind.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DriveOptions<T, Rec> {
  /** Requests in the order they are sent. */
  items: readonly T[];
  /** Most requests in flight at once (Infinity = no cap). */
  concurrency: number;
  /** ms after the start at which item i may be sent; absent = as soon as a slot is free. */
  sendOffsetsMs?: readonly number[];
  /** Sends one request; should not reject (a rejection fails the whole run). */
  send: (item: T, index: number) => Promise<Rec>;
}

export interface DriveResult<Rec> {
  /** In item order. */
  results: Rec[];
  /** First send → last completion. */
  durationMs: number;
}

export async function driveRequests<T, Rec>(options: DriveOptions<T, Rec>): Promise<DriveResult<Rec>> {
  const { items, sendOffsetsMs } = options;
  if (!(options.concurrency >= 1)) throw new RangeError(`concurrency must be >= 1, got ${options.concurrency}`);
  if (sendOffsetsMs !== undefined && sendOffsetsMs.length !== items.length) {
    throw new RangeError(`got ${sendOffsetsMs.length} send times for ${items.length} requests`);
  }
  const results: Rec[] = new Array<Rec>(items.length);
  const startMs = performance.now();
  let inFlight = 0;
  const slotWaiters: Array<() => void> = [];
  const acquire = async (): Promise<void> => {
    if (inFlight < options.concurrency) {
      inFlight += 1;
      return;
    }
    await new Promise<void>((resolve) => slotWaiters.push(resolve));
  };
  const release = (): void => {
    const next = slotWaiters.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else inFlight -= 1;
  };

  const pending: Promise<void>[] = [];
  for (let i = 0; i < items.length; i++) {
    const offsetMs = sendOffsetsMs?.[i];
    if (offsetMs !== undefined) {
      const waitMs = startMs + offsetMs - performance.now();
      if (waitMs > 1) await sleep(waitMs);
    }
    await acquire();
    const item = items[i] as T;
    pending.push(
      options.send(item, i).then(
        (rec) => {
          results[i] = rec;
          release();
        },
        (err: unknown) => {
          release();
          throw err;
        },
      ),
    );
  }
  await Promise.all(pending);
  return { results, durationMs: performance.now() - startMs };
}

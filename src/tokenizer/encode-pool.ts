/**
 * A small pool of worker threads that encode text → token ids off the event loop. Encoding a
 * 2k-token prompt costs 10-30 ms of CPU (more on a loaded machine); done inline it stalls every
 * other stream's next SSE chunk for that long.
 *
 * Who calls: PromptEncoder (prompt-encoder.ts) for long prompts; buildApp creates the pool and
 * closes it when the app closes. Each worker runs one task at a time, so a queued task can still
 * be dropped when its request is cancelled (AbortSignal). Workers start on first use, each loading
 * its own copy of the tokenizer. A worker that dies fails its one task and is replaced when
 * the next task comes.
 */
import { Worker } from 'node:worker_threads';
import type { EncodeReply, EncodeTask } from './encode-worker.js';
import type { EncodeOptions, EncoderSource } from './model-tokenizer.js';

/** The worker entry next to this module: .ts under tsx (tests, scripts), .js in dist/. */
const RUNNING_FROM_TS = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(RUNNING_FROM_TS ? './encode-worker.ts' : './encode-worker.js', import.meta.url);

function spawnEncodeWorker(source: EncoderSource): Worker {
  if (!RUNNING_FROM_TS) return new Worker(WORKER_URL, { workerData: source });
  // Under tsx the worker registers tsx's loader itself (hooks from --import do not reliably reach
  // worker threads on Node 20), as src/engine/cpu/step-session.ts does.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `(async () => { const { register } = await import(${JSON.stringify(tsxApi)}); register(); await import(${JSON.stringify(WORKER_URL.href)}); })()`;
  return new Worker(bootstrap, { eval: true, workerData: source });
}

/** The pool was closed before (or while) the task ran. */
export class EncodePoolClosedError extends Error {
  override name = 'EncodePoolClosedError';
}

/** Every worker is busy and maxQueued tasks already wait: the caller should shed load (429 upstream). */
export class EncodePoolBusyError extends Error {
  override name = 'EncodePoolBusyError';
}

interface Task {
  id: number;
  text: string;
  addSpecialTokens: boolean;
  resolve: (ids: number[]) => void;
  reject: (err: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
  settled: boolean;
}

interface PoolWorker {
  worker: Worker;
  task: Task | null;
}

export interface EncodePoolStats {
  workers: number;
  running: number;
  queued: number;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('the encode task was aborted', 'AbortError');
}

export class EncodePool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Task[] = [];
  private nextId = 0;
  private closed = false;

  /**
   * @param maxQueued tasks that may wait for a worker; one more is refused with EncodePoolBusyError
   *   instead of growing the queue (and the memory of the texts it holds) without bound.
   */
  constructor(
    private readonly source: EncoderSource,
    readonly size: number,
    readonly maxQueued = Number.POSITIVE_INFINITY,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`an encode pool needs at least one worker (got ${size})`);
    if (!(maxQueued >= 0)) throw new Error(`maxQueued must be >= 0 (got ${maxQueued})`);
  }

  /**
   * Encodes `text` in a worker. An abort before a worker takes the task drops it from the queue;
   * an abort while it runs rejects at once and the worker's answer is thrown away.
   */
  encode(text: string, options: EncodeOptions, signal?: AbortSignal): Promise<number[]> {
    if (this.closed) return Promise.reject(new EncodePoolClosedError('the tokenizer pool is closed'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const idle = this.workers.some((w) => w.task === null) || this.workers.length < this.size;
    if (!idle && this.queue.length >= this.maxQueued) {
      return Promise.reject(new EncodePoolBusyError(`${this.queue.length} prompts are already waiting to be tokenized (max ${this.maxQueued})`));
    }
    return new Promise<number[]>((resolve, reject) => {
      const task: Task = { id: this.nextId++, text, addSpecialTokens: options.addSpecialTokens, resolve, reject, signal, onAbort: null, settled: false };
      if (signal) {
        task.onAbort = () => {
          const queued = this.queue.indexOf(task);
          if (queued >= 0) this.queue.splice(queued, 1);
          // A running task keeps its worker busy until the answer comes; settle() ignores it then.
          this.settle(task, () => reject(abortError(signal)));
        };
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      this.queue.push(task);
      this.dispatch();
    });
  }

  /** Starts every worker now (a server calls this once it listens, so the first long prompt does not wait ~0.5 s for one). */
  warmUp(): void {
    while (!this.closed && this.workers.length < this.size) this.workers.push(this.spawn());
  }

  stats(): EncodePoolStats {
    return { workers: this.workers.length, running: this.workers.filter((w) => w.task !== null).length, queued: this.queue.length };
  }

  /** Rejects queued and running tasks and terminates the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new EncodePoolClosedError('the tokenizer pool closed while encoding');
    for (const task of this.queue.splice(0)) this.settle(task, () => task.reject(error));
    const workers = this.workers.splice(0);
    for (const w of workers) if (w.task) this.settle(w.task, () => w.task!.reject(error));
    await Promise.all(
      workers.map(async (w) => {
        w.worker.removeAllListeners();
        w.worker.on('error', () => undefined);
        await w.worker.terminate();
      }),
    );
  }

  private spawn(): PoolWorker {
    const entry: PoolWorker = { worker: spawnEncodeWorker(this.source), task: null };
    const { worker } = entry;
    worker.on('message', (reply: EncodeReply) => {
      const task = entry.task;
      entry.task = null;
      worker.unref();
      if (task !== null && task.id === reply.id) {
        if (reply.kind === 'ids') this.settle(task, () => task.resolve(Array.from(reply.ids)));
        else this.settle(task, () => task.reject(new Error(`tokenizer worker: ${reply.message}`)));
      }
      this.dispatch();
    });
    const replace = (err: Error) => {
      const task = entry.task;
      entry.task = null;
      if (task) this.settle(task, () => task.reject(err));
      worker.removeAllListeners();
      worker.on('error', () => undefined); // a late second error of a dead worker is nobody's business
      void worker.terminate();
      // Replaced on demand by dispatch(), not here: a worker that cannot even start (bad tokenizer
      // files) then fails one task per attempt instead of respawning in a loop.
      const index = this.workers.indexOf(entry);
      if (index >= 0) this.workers.splice(index, 1);
      if (!this.closed) this.dispatch();
    };
    worker.on('error', (err) => replace(err));
    worker.on('exit', (code) => replace(new Error(`tokenizer worker exited (code ${code})`)));
    // An idle worker must not keep the process alive (tests, CLI one-shots); a busy one is ref'd.
    worker.unref();
    return entry;
  }

  private dispatch(): void {
    // Workers start on demand: an app that only ever sees short prompts never pays for them.
    while (this.workers.length < this.size && this.queue.length > this.workers.filter((w) => w.task === null).length) {
      this.workers.push(this.spawn());
    }
    for (const entry of this.workers) {
      if (entry.task !== null) continue;
      const task = this.queue.shift();
      if (task === undefined) return;
      entry.task = task;
      entry.worker.ref();
      const message: EncodeTask = { id: task.id, text: task.text, addSpecialTokens: task.addSpecialTokens };
      entry.worker.postMessage(message);
    }
  }

  /** Runs the task's outcome once: a task is settled by its answer, its abort, or the pool's close. */
  private settle(task: Task, outcome: () => void): void {
    if (task.settled) return;
    task.settled = true;
    if (task.signal && task.onAbort) task.signal.removeEventListener('abort', task.onAbort);
    outcome();
  }
}

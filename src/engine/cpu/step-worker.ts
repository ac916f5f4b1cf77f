/**
 * Worker-thread side of StepSession. onnxruntime-node creates sessions and runs them synchronously
 * on the calling JS thread (its run() only defers with setImmediate), so the session lives here and
 * the main thread's event loop keeps serving HTTP while a step computes.
 *
 * Protocol (one request at a time, answered in order):
 *   create {model: Uint8Array | string, options}  → created | error
 *   run {feeds: {name: {type, data, dims}}}        → result {outputs: {name: {data, dims}}} | error
 *   close                                          → closed
 */
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

export interface WireTensor {
  type: 'float32' | 'int64';
  data: Float32Array | BigInt64Array;
  dims: number[];
}

export type StepWorkerRequest =
  | { kind: 'create'; model: Uint8Array | string; options: ort.InferenceSession.SessionOptions }
  | { kind: 'run'; feeds: Record<string, WireTensor> }
  | { kind: 'close' };

export type StepWorkerReply =
  | { kind: 'created' }
  | { kind: 'result'; outputs: Record<string, { data: Float32Array; dims: number[] }> }
  | { kind: 'closed' }
  | { kind: 'error'; message: string };

const port = parentPort;
if (port === null) throw new Error('step-worker.ts must run in a worker thread');

let session: ort.InferenceSession | null = null;

async function handle(req: StepWorkerRequest): Promise<void> {
  switch (req.kind) {
    case 'create':
      session =
        typeof req.model === 'string'
          ? await ort.InferenceSession.create(req.model, req.options)
          : await ort.InferenceSession.create(req.model, req.options);
      port!.postMessage({ kind: 'created' } satisfies StepWorkerReply);
      return;
    case 'run': {
      if (session === null) throw new Error('run before create');
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(req.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      const out = await session.run(feeds);
      const outputs: Record<string, { data: Float32Array; dims: number[] }> = {};
      const transfer: ArrayBuffer[] = [];
      for (const [name, t] of Object.entries(out)) {
        // Own copy per output: ORT's buffers may be external memory that cannot be transferred.
        const data = (t.data as Float32Array).slice();
        outputs[name] = { data, dims: [...t.dims] };
        transfer.push(data.buffer as ArrayBuffer);
      }
      port!.postMessage({ kind: 'result', outputs } satisfies StepWorkerReply, transfer);
      return;
    }
    case 'close':
      await session?.release();
      session = null;
      port!.postMessage({ kind: 'closed' } satisfies StepWorkerReply);
      return;
  }
}

port.on('message', (req: StepWorkerRequest) => {
  handle(req).catch((err: unknown) => {
    port.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies StepWorkerReply);
  });
});

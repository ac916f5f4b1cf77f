/**
 * Streaming safetensors writer: the header is computed from the tensor list up front, then each
 * tensor's bytes are produced chunk by chunk and appended, so a 15 GB checkpoint is written
 * without holding it in memory. Used by make-checkpoint and by tests that build fixtures.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { SAFETENSORS_ITEM_BYTES, float32ToBytes, type SafetensorsDtype } from './float-convert.js';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
}

export function tensorByteLength(t: TensorToWrite): number {
  return t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_ITEM_BYTES[t.dtype];
}

/** Header JSON bytes, space-padded to a multiple of 8 so the data section is 8-byte aligned. */
export function safetensorsHeader(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = tensorByteLength(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.byteLength), true);
  out.set(body, 8);
  return out;
}

/**
 * Writes `tensors` to `path`. `produce(t, emit)` must emit exactly tensorByteLength(t) bytes for
 * tensor t, in any number of chunks (emit copies nothing; chunks may be reused after it returns).
 */
export function writeSafetensorsStreaming(
  path: string,
  tensors: readonly TensorToWrite[],
  produce: (t: TensorToWrite, emit: (chunk: Uint8Array) => void) => void,
  metadata: Record<string, string> = { format: 'pt' },
): void {
  const fd = openSync(path, 'w');
  try {
    const writeAll = (chunk: Uint8Array): void => {
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done);
    };
    writeAll(safetensorsHeader(tensors, metadata));
    for (const t of tensors) {
      const expected = tensorByteLength(t);
      let written = 0;
      produce(t, (chunk) => {
        written += chunk.byteLength;
        if (written > expected) throw new Error(`${path}: tensor "${t.name}" produced more than ${expected} bytes`);
        writeAll(chunk);
      });
      if (written !== expected) throw new Error(`${path}: tensor "${t.name}" produced ${written} bytes, expected ${expected}`);
    }
  } finally {
    closeSync(fd);
  }
}

/** Small-tensor convenience (tests, fixtures): float32 values narrowed to each tensor's dtype. */
export function writeSafetensors(path: string, tensors: ReadonlyArray<TensorToWrite & { data: Float32Array }>, metadata?: Record<string, string>): void {
  writeSafetensorsStreaming(path, tensors, (t, emit) => {
    const data = (t as TensorToWrite & { data: Float32Array }).data;
    const out = new Uint8Array(tensorByteLength(t));
    if (data.length * SAFETENSORS_ITEM_BYTES[t.dtype] !== out.byteLength) throw new Error(`tensor "${t.name}": ${data.length} values for shape [${t.shape.join(', ')}]`);
    float32ToBytes(data, t.dtype, out);
    emit(out);
  }, metadata);
}

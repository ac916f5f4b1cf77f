/**
 * Safetensors reader: single file (model.safetensors) or sharded (model.safetensors.index.json,
 * only the shards it lists are opened). Headers are validated up front; tensor bytes are read
 * lazily, one tensor at a time, with positioned reads into a fresh buffer, so loading a 7B
 * checkpoint never holds the file and a copy of it at once. Format: 8-byte little-endian header
 * length, JSON header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, data.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { endianness } from 'node:os';
import type { TensorView } from './types.js';
import { SAFETENSORS_ITEM_BYTES, bytesToFloat32, type SafetensorsDtype } from './float-convert.js';

export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** Headers beyond this are not safetensors files (the reference implementation caps at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
/** readSync moves at most ~2 GiB per call. */
const READ_CHUNK_BYTES = 1 << 30;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute offset of the tensor's first byte in the file. */
  fileOffset: number;
  byteLength: number;
}

function isDtype(d: unknown): d is SafetensorsDtype {
  return d === 'BF16' || d === 'F16' || d === 'F32';
}

function readFully(fd: number, out: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < out.byteLength) {
    const n = readSync(fd, out, done, Math.min(READ_CHUNK_BYTES, out.byteLength - done), position + done);
    if (n === 0) throw new SafetensorsError(`${path}: unexpected end of file at byte ${position + done} (truncated file?)`);
    done += n;
  }
}

/** One open .safetensors file. Owned by a TensorSource; close() releases the descriptor. */
export class SafetensorsFile {
  readonly entries = new Map<string, SafetensorsEntry>();
  readonly metadata: Record<string, string>;
  private fd: number | null;

  private constructor(readonly path: string, fd: number, readonly sizeBytes: number, header: Record<string, unknown>, dataStart: number) {
    this.fd = fd;
    const meta = header['__metadata__'];
    this.metadata = meta && typeof meta === 'object' ? (meta as Record<string, string>) : {};
    const dataBytes = sizeBytes - dataStart;
    const spans: Array<[number, number, string]> = [];
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
      if (!e || typeof e !== 'object') this.fail(`tensor "${name}": header entry is not an object`);
      if (!isDtype(e.dtype)) this.fail(`tensor "${name}": unsupported dtype ${JSON.stringify(e.dtype)} (expected BF16, F16 or F32)`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) this.fail(`tensor "${name}": invalid shape ${JSON.stringify(e.shape)}`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
        this.fail(`tensor "${name}": invalid data_offsets ${JSON.stringify(off)}`);
      }
      const [begin, end] = off as [number, number];
      const shape = e.shape as number[];
      const expected = shape.reduce((a, b) => a * b, 1) * SAFETENSORS_ITEM_BYTES[e.dtype];
      if (end - begin !== expected) {
        this.fail(`tensor "${name}": data_offsets span ${end - begin} bytes, expected ${expected} for ${e.dtype} [${shape.join(', ')}]`);
      }
      if (end > dataBytes) {
        this.fail(`tensor "${name}": data ends at byte ${dataStart + end}, past the end of the file (${sizeBytes} bytes; truncated file?)`);
      }
      spans.push([begin, end, name]);
      this.entries.set(name, { name, dtype: e.dtype, shape, fileOffset: dataStart + begin, byteLength: expected });
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![0] < spans[i - 1]![1]) this.fail(`tensors "${spans[i - 1]![2]}" and "${spans[i]![2]}" overlap in the data section`);
    }
  }

  private fail(message: string): never {
    this.close();
    throw new SafetensorsError(`${this.path}: ${message}`);
  }

  static open(path: string): SafetensorsFile {
    if (endianness() !== 'LE') throw new SafetensorsError('safetensors reading needs a little-endian host');
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new SafetensorsError(`${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(`${path}: truncated file (${size} bytes, no safetensors header)`);
      const lenBuf = new Uint8Array(8);
      readFully(fd, lenBuf, 0, path);
      const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
      if (headerLen > MAX_HEADER_BYTES) throw new SafetensorsError(`${path}: header length ${headerLen} is not plausible (not a safetensors file?)`);
      if (8 + headerLen > size) throw new SafetensorsError(`${path}: truncated file (header claims ${headerLen} bytes, file has ${size})`);
      const headerBytes = new Uint8Array(headerLen);
      readFully(fd, headerBytes, 8, path);
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder().decode(headerBytes));
      } catch (err) {
        throw new SafetensorsError(`${path}: invalid header JSON (${(err as Error).message.split('\n')[0]})`);
      }
      if (!header || typeof header !== 'object' || Array.isArray(header)) throw new SafetensorsError(`${path}: header is not a JSON object`);
      return new SafetensorsFile(path, fd, size, header as Record<string, unknown>, 8 + headerLen);
    } catch (err) {
      try { closeSync(fd); } catch { /* already closed by fail() */ }
      throw err;
    }
  }

  /** Reads one tensor's bytes into a new buffer (a fresh ArrayBuffer: aligned for typed-array views). */
  readBytes(entry: SafetensorsEntry): Uint8Array {
    if (this.fd === null) throw new SafetensorsError(`${this.path}: read of "${entry.name}" after close()`);
    const out = new Uint8Array(entry.byteLength);
    readFully(this.fd, out, entry.fileOffset, this.path);
    return out;
  }

  view(name: string): TensorView | undefined {
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    return {
      name,
      dtype: entry.dtype,
      shape: entry.shape,
      bytes: () => this.readBytes(entry),
      toFloat32: () => bytesToFloat32(this.readBytes(entry), entry.dtype),
    };
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** All tensors of a checkpoint folder by name. Who calls: loadCheckpoint; close() when done. */
export interface TensorSource {
  /** The .safetensors files opened (absolute paths). */
  readonly files: string[];
  names(): string[];
  get(name: string): TensorView | undefined;
  close(): void;
}

function parseIndex(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (err) {
    throw new SafetensorsError(`${indexPath}: invalid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new SafetensorsError(`${indexPath}: missing "weight_map" object`);
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || !file.endsWith('.safetensors')) {
      throw new SafetensorsError(`${indexPath}: weight_map["${name}"] = ${JSON.stringify(file)} is not a .safetensors file name in this folder`);
    }
    out.set(name, file);
  }
  return out;
}

/**
 * Opens the checkpoint's tensors in `dir`: model.safetensors.index.json when present (only listed
 * shards and only listed names), else model.safetensors.
 */
export function openSafetensorsCheckpoint(dir: string): TensorSource {
  const indexPath = join(dir, SAFETENSORS_INDEX_FILE);
  const singlePath = join(dir, SAFETENSORS_SINGLE_FILE);
  if (existsSync(indexPath)) {
    const weightMap = parseIndex(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const file of new Set(weightMap.values())) {
        const path = join(dir, file);
        if (!existsSync(path)) throw new SafetensorsError(`${indexPath}: lists shard ${file}, which is missing from ${dir}`);
        shards.set(file, SafetensorsFile.open(path));
      }
      for (const [name, file] of weightMap) {
        if (!shards.get(file)!.entries.has(name)) throw new SafetensorsError(`${indexPath}: lists tensor "${name}" in ${file}, which has no such tensor`);
      }
    } catch (err) {
      for (const s of shards.values()) s.close();
      throw err;
    }
    return {
      files: [...shards.values()].map((s) => s.path),
      names: () => [...weightMap.keys()],
      get: (name) => {
        const file = weightMap.get(name);
        return file === undefined ? undefined : shards.get(file)!.view(name);
      },
      close: () => { for (const s of shards.values()) s.close(); },
    };
  }
  if (existsSync(singlePath)) {
    const file = SafetensorsFile.open(singlePath);
    return { files: [file.path], names: () => [...file.entries.keys()], get: (name) => file.view(name), close: () => file.close() };
  }
  throw new SafetensorsError(`${dir}: no ${SAFETENSORS_SINGLE_FILE} or ${SAFETENSORS_INDEX_FILE}`);
}

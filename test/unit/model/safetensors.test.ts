import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, openSafetensorsCheckpoint } from '../../../src/model/safetensors.js';
import { safetensorsHeader, writeSafetensors } from '../../../src/model/safetensors-writer.js';
import { bytesToFloat32, float32ToBytes } from '../../../src/model/float-convert.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'st-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a raw file: 8-byte length + header JSON (unpadded) + data bytes. */
function rawFile(path: string, header: unknown, dataBytes: number): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

function assertOneLine(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: Error) => {
    assert.match(err.message, re);
    assert.equal(err.message.includes('\n'), false, err.message);
    return true;
  });
}

test('bf16/f16/f32 round trip through writer and reader', (t) => {
  const dir = tmp(t);
  const values = new Float32Array([0, 1, -2.5, 3.140625, 1e-3, -65504, 0.333251953125]);
  writeSafetensors(join(dir, 'model.safetensors'), [
    { name: 'a', dtype: 'F32', shape: [7], data: values },
    { name: 'b', dtype: 'BF16', shape: [7, 1], data: values },
    { name: 'c', dtype: 'F16', shape: [1, 7], data: values },
    { name: 'empty', dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
  ]);
  const src = openSafetensorsCheckpoint(dir);
  t.after(() => src.close());
  assert.deepEqual(src.names().sort(), ['a', 'b', 'c', 'empty']);
  assert.deepEqual(Array.from(src.get('a')!.toFloat32()), Array.from(values));
  const b = src.get('b')!;
  assert.equal(b.dtype, 'BF16');
  assert.deepEqual(b.shape, [7, 1]);
  assert.equal(b.bytes().byteLength, 14);
  // bf16 keeps 8 mantissa bits: values exactly representable survive, others round to nearest
  assert.deepEqual(Array.from(b.toFloat32()).slice(0, 4), [0, 1, -2.5, 3.140625]);
  assert.ok(Math.abs(b.toFloat32()[4]! - 1e-3) < 1e-5);
  assert.deepEqual(Array.from(src.get('c')!.toFloat32()).map((x) => Math.round(x * 1e4) / 1e4), [0, 1, -2.5, 3.1406, 0.001, -65504, 0.3333]);
  assert.equal(src.get('empty')!.toFloat32().length, 0);
  assert.equal(src.get('missing'), undefined);
  // data section 8-byte aligned
  const headerLen = Number(readFileSync(join(dir, 'model.safetensors')).readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0);
});

test('bf16 rounding is round-to-nearest-even and f16 handles subnormals', () => {
  const out = new Uint8Array(8);
  float32ToBytes(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 2 ** -20, -0]), 'BF16', out);
  assert.deepEqual(Array.from(bytesToFloat32(out, 'BF16')), [1, 1 + 2 ** -6, 2 ** -20, -0]);
  const h = new Uint8Array(6);
  float32ToBytes(new Float32Array([2 ** -24, 6e-5, 1e6]), 'F16', h);
  assert.deepEqual(Array.from(bytesToFloat32(h, 'F16')), [2 ** -24, 0.00006002187728881836, Infinity]);
});

test('sharded checkpoints: only listed shards and names are used', (t) => {
  const dir = tmp(t);
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [
    { name: 'y', dtype: 'BF16', shape: [1], data: new Float32Array([3]) },
    { name: 'unlisted', dtype: 'F32', shape: [1], data: new Float32Array([9]) },
  ]);
  // a legacy shard set beside the real one must be ignored (spec §2.2)
  writeFileSync(join(dir, 'legacy-00001-of-00001.safetensors'), 'garbage');
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({
    metadata: { total_size: 10 }, weight_map: { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' },
  }));
  const src = openSafetensorsCheckpoint(dir);
  t.after(() => src.close());
  assert.deepEqual(src.names(), ['x', 'y']);
  assert.equal(src.files.length, 2);
  assert.deepEqual(Array.from(src.get('y')!.toFloat32()), [3]);
  assert.equal(src.get('unlisted'), undefined);
});

test('malformed files give one line naming the problem', (t) => {
  const dir = tmp(t);
  const p = join(dir, 'model.safetensors');
  const good = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  writeFileSync(p, Buffer.alloc(5));
  assertOneLine(() => SafetensorsFile.open(p), /model\.safetensors: truncated file \(5 bytes/);

  rawFile(p, good, 16);
  truncateSync(p, statSync(p).size - 4);
  assertOneLine(() => SafetensorsFile.open(p), /tensor "w": data ends at byte \d+, past the end of the file .*truncated/);

  rawFile(p, good, 16);
  truncateSync(p, 20);
  assertOneLine(() => SafetensorsFile.open(p), /truncated file \(header claims \d+ bytes, file has 20\)/);

  rawFile(p, { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 16);
  assertOneLine(() => SafetensorsFile.open(p), /tensor "w": data_offsets span 12 bytes, expected 16 for F32 \[2, 2\]/);

  rawFile(p, { w: { dtype: 'F32', shape: [1], data_offsets: [1000, 1004] } }, 16);
  assertOneLine(() => SafetensorsFile.open(p), /tensor "w": data ends at byte 10\d\d, past the end/);

  rawFile(p, { w: { dtype: 'I8', shape: [1], data_offsets: [0, 1] } }, 16);
  assertOneLine(() => SafetensorsFile.open(p), /tensor "w": unsupported dtype "I8"/);

  rawFile(p, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 16);
  assertOneLine(() => SafetensorsFile.open(p), /tensors "a" and "b" overlap/);

  const badJson = Buffer.from('{"w": ');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(badJson.length));
  writeFileSync(p, Buffer.concat([len, badJson]));
  assertOneLine(() => SafetensorsFile.open(p), /invalid header JSON/);

  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 40n);
  writeFileSync(p, huge);
  assertOneLine(() => SafetensorsFile.open(p), /header length \d+ is not plausible/);

  // a header that validates but a file that shrank afterwards: the read names the file
  writeSafetensors(p, [{ name: 'v', dtype: 'F32', shape: [4], data: new Float32Array(4) }]);
  const f = SafetensorsFile.open(p);
  t.after(() => f.close());
  truncateSync(p, statSync(p).size - 8);
  assertOneLine(() => f.view('v')!.bytes(), /unexpected end of file .*truncated/);
});

test('index problems: missing shard, unlisted tensor, bad JSON, no checkpoint', (t) => {
  const dir = tmp(t);
  assertOneLine(() => openSafetensorsCheckpoint(dir), /no model\.safetensors or model\.safetensors\.index\.json/);
  const idx = join(dir, 'model.safetensors.index.json');
  writeFileSync(idx, '{"weight_map": ');
  assertOneLine(() => openSafetensorsCheckpoint(dir), /index\.json: invalid JSON/);
  writeFileSync(idx, JSON.stringify({ weight_map: { x: 's1.safetensors' } }));
  assertOneLine(() => openSafetensorsCheckpoint(dir), /lists shard s1\.safetensors, which is missing/);
  writeSafetensors(join(dir, 's1.safetensors'), [{ name: 'y', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
  assertOneLine(() => openSafetensorsCheckpoint(dir), /lists tensor "x" in s1\.safetensors, which has no such tensor/);
  writeFileSync(idx, JSON.stringify({ weight_map: { x: '../s1.safetensors' } }));
  assertOneLine(() => openSafetensorsCheckpoint(dir), /is not a \.safetensors file name in this folder/);
});

test('header is the one safetensors readers expect', () => {
  const h = safetensorsHeader([{ name: 't', dtype: 'BF16', shape: [3] }]);
  const len = Number(Buffer.from(h).readBigUInt64LE(0));
  assert.equal(len, h.byteLength - 8);
  const json = JSON.parse(Buffer.from(h.subarray(8)).toString());
  assert.deepEqual(json.t, { dtype: 'BF16', shape: [3], data_offsets: [0, 6] });
});

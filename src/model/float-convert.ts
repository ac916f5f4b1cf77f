/**
 * bf16 / f16 ↔ f32 conversion of little-endian tensor bytes. Used by TensorView.toFloat32 (reading)
 * and make-checkpoint (writing). Rounding to bf16/f16 is round-to-nearest-even, like torch.
 */
import type { TensorView } from './types.js';

export type SafetensorsDtype = TensorView['dtype'];

export const SAFETENSORS_ITEM_BYTES: Record<SafetensorsDtype, number> = { BF16: 2, F16: 2, F32: 4 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** Widens `bytes` (little-endian, `dtype`) into a new Float32Array. */
export function bytesToFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const n = bytes.byteLength / SAFETENSORS_ITEM_BYTES[dtype];
  const out = new Float32Array(n);
  if (dtype === 'F32') {
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const src = bytes.byteOffset % 2 === 0
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, n)
    : new Uint16Array(bytes.slice().buffer);
  if (dtype === 'BF16') {
    const outBits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) outBits[i] = src[i]! << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]!);
  }
  return out;
}

/** Narrows float32 values into little-endian `dtype` bytes written into `out` (byteLength n·itemsize). */
export function float32ToBytes(values: Float32Array, dtype: SafetensorsDtype, out: Uint8Array): void {
  const n = values.length;
  if (dtype === 'F32') {
    out.set(new Uint8Array(values.buffer, values.byteOffset, n * 4));
    return;
  }
  const dst = new Uint16Array(out.buffer, out.byteOffset, n);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(values.buffer, values.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const x = bits[i]!;
      if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) { dst[i] = 0x7fc0; continue; }
      dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < n; i++) dst[i] = floatToHalf(values[i]!);
  }
}

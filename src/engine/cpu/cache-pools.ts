/**
 * The CPU engine's per-sequence memory: the Mamba2 state-slot pool (conv taps + SSM state of every
 * layer, float32, indexed by slot) and the paged KV pool (16-token pages holding K and V of every
 * shared-attention invocation, post-rope, float32).
 *
 * Ownership: the engine allocates both once in initCache with the counts cache/ chose; cache/ owns
 * which slot/page belongs to which sequence. Methods here copy bytes and check ranges, nothing more.
 */
import type { Zamba2Dims } from '../../model/types.js';
import { EngineError } from '../engine.js';
import { convTapsOf } from './onnx-builder.js';

export const TOKENS_PER_PAGE = 16;

export function convStateFloats(d: Zamba2Dims): number {
  return convTapsOf(d) * d.convDim;
}

export function ssmStateFloats(d: Zamba2Dims): number {
  return d.nMambaHeads * d.mambaHeadDim * d.mambaDState;
}

export function stateSlotBytes(d: Zamba2Dims): number {
  return d.numLayers * (convStateFloats(d) + ssmStateFloats(d)) * 4;
}

export function kvPageBytes(d: Zamba2Dims): number {
  return TOKENS_PER_PAGE * d.hybridLayerIds.length * 2 * d.attentionHiddenSize * 4;
}

export class StateSlotPool {
  /** Per layer: [slotCount, taps, convDim] and [slotCount, nh, P, N]. */
  private readonly conv: Float32Array[];
  private readonly ssm: Float32Array[];
  private readonly convFloats: number;
  private readonly ssmFloats: number;

  constructor(d: Zamba2Dims, readonly slotCount: number) {
    this.convFloats = convStateFloats(d);
    this.ssmFloats = ssmStateFloats(d);
    this.conv = Array.from({ length: d.numLayers }, () => new Float32Array(slotCount * this.convFloats));
    this.ssm = Array.from({ length: d.numLayers }, () => new Float32Array(slotCount * this.ssmFloats));
  }

  private check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slotCount) {
      throw new EngineError(`state slot ${slot} out of range [0, ${this.slotCount})`, 'slot_out_of_range', false);
    }
  }

  /** Views (no copy) of one slot's conv and SSM state of layer l. */
  convView(l: number, slot: number): Float32Array {
    this.check(slot);
    return this.conv[l]!.subarray(slot * this.convFloats, (slot + 1) * this.convFloats);
  }

  ssmView(l: number, slot: number): Float32Array {
    this.check(slot);
    return this.ssm[l]!.subarray(slot * this.ssmFloats, (slot + 1) * this.ssmFloats);
  }

  reset(slot: number): void {
    for (let l = 0; l < this.conv.length; l++) {
      this.convView(l, slot).fill(0);
      this.ssmView(l, slot).fill(0);
    }
  }

  copy(src: number, dst: number): void {
    if (src === dst) return;
    for (let l = 0; l < this.conv.length; l++) {
      this.convView(l, dst).set(this.convView(l, src));
      this.ssmView(l, dst).set(this.ssmView(l, src));
    }
  }
}

export class KvPagePool {
  /**
   * One array per page: [attention invocation][K | V][16 tokens][2H], allocated on first write so
   * a large pool costs memory only for pages in use (small arrays are not lazily zeroed by the OS).
   */
  private readonly pages: Array<Float32Array | undefined>;
  private readonly pageFloats: number;
  private readonly rowFloats: number;
  private readonly attnCount: number;

  constructor(d: Zamba2Dims, readonly pageCount: number) {
    this.rowFloats = d.attentionHiddenSize;
    this.attnCount = d.hybridLayerIds.length;
    this.pageFloats = this.attnCount * 2 * TOKENS_PER_PAGE * this.rowFloats;
    this.pages = new Array<Float32Array | undefined>(pageCount);
  }

  private page(pageTable: Int32Array, position: number): Float32Array {
    const idx = Math.floor(position / TOKENS_PER_PAGE);
    if (idx >= pageTable.length) {
      throw new EngineError(`page table (${pageTable.length} pages) does not cover position ${position}`, 'page_table_short', false);
    }
    const id = pageTable[idx]!;
    if (!Number.isInteger(id) || id < 0 || id >= this.pageCount) {
      throw new EngineError(`KV page ${id} out of range [0, ${this.pageCount})`, 'page_out_of_range', false);
    }
    return (this.pages[id] ??= new Float32Array(this.pageFloats));
  }

  private offset(a: number, kv: 0 | 1, position: number): number {
    return ((a * 2 + kv) * TOKENS_PER_PAGE + (position % TOKENS_PER_PAGE)) * this.rowFloats;
  }

  /** Copies positions [0, length) of invocation a's K (kv 0) or V (kv 1) into out[outOffset…]. */
  gather(pageTable: Int32Array, a: number, kv: 0 | 1, length: number, out: Float32Array, outOffset: number): void {
    for (let pos = 0; pos < length; ) {
      const run = Math.min(TOKENS_PER_PAGE - (pos % TOKENS_PER_PAGE), length - pos);
      const start = this.offset(a, kv, pos);
      out.set(this.page(pageTable, pos).subarray(start, start + run * this.rowFloats), outOffset + pos * this.rowFloats);
      pos += run;
    }
  }

  /** Writes `count` rows of src (from srcOffset) as positions [start, start + count). */
  scatter(pageTable: Int32Array, a: number, kv: 0 | 1, start: number, count: number, src: Float32Array, srcOffset: number): void {
    for (let i = 0; i < count; ) {
      const pos = start + i;
      const run = Math.min(TOKENS_PER_PAGE - (pos % TOKENS_PER_PAGE), count - i);
      const from = srcOffset + i * this.rowFloats;
      this.page(pageTable, pos).set(src.subarray(from, from + run * this.rowFloats), this.offset(a, kv, pos));
      i += run;
    }
  }
}

/**
 * HybridCache: the memory of a hybrid Mamba2 + attention model, per sequence = one state slot
 * (constant size) + KV pages (grow with length). It admits a sequence only when both a slot and the
 * pages of its first chunk fit, and frees both together. Sized once from engine.describe().
 * Called by the scheduler loop only (single-threaded; no method awaits).
 */
import type { CacheSizes, EngineDescription } from '../engine/engine.js';
import { KvBlockAllocator } from './kv-block-allocator.js';
import { StateSlotPool } from './state-slot-pool.js';

export interface CacheSizingOptions {
  /** Upper bound on slots (one per running sequence). */
  maxNumSeqs: number;
  /** Fraction of `cacheBudgetBytes` to use, (0, 1]. Default 1. */
  cacheFraction?: number;
}

/**
 * Split the budget: a slot for every sequence that may run (up to maxNumSeqs and the engine's
 * per-step limit), the rest in KV pages; slots are given back while pages would be fewer than
 * slots (a running sequence needs at least one page). Throws when not even one of each fits.
 */
export function planCacheSizes(description: EngineDescription, options: CacheSizingOptions): CacheSizes {
  const fraction = options.cacheFraction ?? 1;
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`cacheFraction must be in (0, 1], got ${fraction}`);
  const budgetBytes = Math.floor(description.cacheBudgetBytes * fraction);
  const { stateSlotBytes, kvPageBytes, tokensPerPage } = description;
  let slotCount = Math.min(options.maxNumSeqs, description.maxSequencesPerStep, stateSlotBytes > 0 ? Math.floor(budgetBytes / stateSlotBytes) : Infinity);
  const pagesLeft = (slots: number): number =>
    kvPageBytes > 0
      ? Math.floor((budgetBytes - slots * stateSlotBytes) / kvPageBytes)
      : slots * Math.ceil(description.maxModelLen / tokensPerPage); // attention-free: pages are free, never the limit
  while (slotCount > 1 && pagesLeft(slotCount) < slotCount) slotCount--;
  const pageCount = pagesLeft(slotCount);
  if (!(slotCount >= 1 && pageCount >= 1)) {
    throw new Error(
      `cache budget of ${budgetBytes} bytes cannot hold one state slot (${stateSlotBytes} bytes) and one KV page (${kvPageBytes} bytes)`,
    );
  }
  return { slotCount, pageCount };
}

export class HybridCache {
  readonly slots: StateSlotPool;
  readonly pages: KvBlockAllocator;
  private readonly slotOfSeq = new Map<number, number>();

  constructor(sizes: CacheSizes, tokensPerPage = 16) {
    this.slots = new StateSlotPool(sizes.slotCount);
    this.pages = new KvBlockAllocator(sizes.pageCount, tokensPerPage);
  }

  get sizes(): CacheSizes {
    return { slotCount: this.slots.slotCount, pageCount: this.pages.pageCount };
  }

  get tokensPerPage(): number {
    return this.pages.tokensPerPage;
  }

  /** Whether a new sequence whose first chunk ends at `firstChunkEnd` positions could be admitted now. */
  canAdmit(firstChunkEnd: number): boolean {
    return this.slots.freeCount > 0 && this.pages.pagesFor(firstChunkEnd) <= this.pages.freeCount;
  }

  /** Take a slot (queued for reset) and the pages of the first chunk; null (nothing taken) when either is short. */
  admit(seqId: number, firstChunkEnd: number): number | null {
    if (this.slotOfSeq.has(seqId)) throw new Error(`HybridCache: sequence ${seqId} admitted twice`);
    if (!this.canAdmit(firstChunkEnd)) return null;
    const slot = this.slots.acquire({ reset: true })!;
    this.pages.allocate(seqId, firstChunkEnd);
    this.slotOfSeq.set(seqId, slot);
    return slot;
  }

  /**
   * Fork `childSeqId` off `parentSeqId` after the parent computed `sharedTokens` positions (a
   * multiple of tokensPerPage): a fresh slot that the caller must fill with engine.copySlot(parent,
   * child) before the next step, and the parent's pages shared by reference. Null when no slot is free.
   */
  fork(parentSeqId: number, childSeqId: number, sharedTokens: number): number | null {
    if (sharedTokens % this.pages.tokensPerPage !== 0) throw new Error(`HybridCache: fork at ${sharedTokens}, not a page boundary`);
    if (this.slotOfSeq.has(childSeqId)) throw new Error(`HybridCache: sequence ${childSeqId} admitted twice`);
    const slot = this.slots.acquire({ reset: false });
    if (slot === null) return null;
    this.pages.share(parentSeqId, childSeqId, sharedTokens / this.pages.tokensPerPage);
    this.slotOfSeq.set(childSeqId, slot);
    return slot;
  }

  /** Grow a running sequence's pages to cover `tokenCount` positions; false (no change) when the pool is short. */
  grow(seqId: number, tokenCount: number): boolean {
    return this.pages.allocate(seqId, tokenCount);
  }

  /** Free the slot and every page reference of `seqId` (finish, abort, error, preemption). Idempotent. */
  free(seqId: number): void {
    const slot = this.slotOfSeq.get(seqId);
    if (slot !== undefined) {
      this.slots.release(slot);
      this.slotOfSeq.delete(seqId);
    }
    this.pages.freeSequence(seqId);
  }

  slotOf(seqId: number): number | undefined {
    return this.slotOfSeq.get(seqId);
  }

  blockTable(seqId: number): Int32Array {
    return this.pages.blockTable(seqId);
  }

  takePendingResets(): Int32Array {
    return this.slots.takePendingResets();
  }

  /** Sequences holding any memory (tests: zero once every request has finished). */
  get sequenceCount(): number {
    return Math.max(this.slotOfSeq.size, this.pages.sequenceCount);
  }
}

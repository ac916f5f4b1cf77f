/**
 * KvBlockAllocator: paged attention KV cache bookkeeping (ids only; the engine owns the bytes).
 * Pages hold `tokensPerPage` (16) positions each. Every sequence has a block table (page ids for
 * positions [0, 16·len)); pages are allocated on demand as the sequence's positions grow and carry
 * reference counts, so a forked sequence (n > 1) can share its parent's full pages read-only.
 * A page returns to the free list when its last holder frees it. Called by HybridCache only.
 *
 * NOTE: shared pages are always full pages (forks happen at a page boundary), so no two live
 * sequences ever write the same page; there is no copy-on-write.
 */
export class KvBlockAllocator {
  private readonly free: number[];
  private readonly refCounts: Int32Array;
  private readonly tables = new Map<number, number[]>();

  constructor(
    readonly pageCount: number,
    readonly tokensPerPage = 16,
  ) {
    if (!(Number.isInteger(pageCount) && pageCount > 0)) throw new RangeError(`pageCount must be a positive integer, got ${pageCount}`);
    this.refCounts = new Int32Array(pageCount);
    this.free = Array.from({ length: pageCount }, (_, i) => pageCount - 1 - i);
  }

  get freeCount(): number {
    return this.free.length;
  }

  get usedCount(): number {
    return this.pageCount - this.free.length;
  }

  get usageFraction(): number {
    return this.usedCount / this.pageCount;
  }

  /** Pages needed to hold `tokenCount` positions. */
  pagesFor(tokenCount: number): number {
    return Math.ceil(tokenCount / this.tokensPerPage);
  }

  /** New pages `seqId` would need to hold `tokenCount` positions (0 when it already has them). */
  missingPages(seqId: number, tokenCount: number): number {
    const held = this.tables.get(seqId)?.length ?? 0;
    return Math.max(0, this.pagesFor(tokenCount) - held);
  }

  /** Grow `seqId`'s table to cover `tokenCount` positions. All or nothing: false (and no change) when the pool is short. */
  allocate(seqId: number, tokenCount: number): boolean {
    const missing = this.missingPages(seqId, tokenCount);
    if (missing > this.free.length) return false;
    let table = this.tables.get(seqId);
    if (!table) {
      table = [];
      this.tables.set(seqId, table);
    }
    for (let i = 0; i < missing; i++) {
      const page = this.free.pop()!;
      this.refCounts[page] = 1;
      table.push(page);
    }
    return true;
  }

  /** Give `childSeqId` the first `sharedPageCount` pages of `parentSeqId`'s table, shared by reference. */
  share(parentSeqId: number, childSeqId: number, sharedPageCount: number): void {
    const parent = this.tables.get(parentSeqId) ?? [];
    if (sharedPageCount > parent.length) throw new Error(`KvBlockAllocator: share of ${sharedPageCount} pages, parent ${parentSeqId} holds ${parent.length}`);
    if (this.tables.has(childSeqId)) throw new Error(`KvBlockAllocator: sequence ${childSeqId} already has pages`);
    const table = parent.slice(0, sharedPageCount);
    for (const page of table) this.refCounts[page]!++;
    this.tables.set(childSeqId, table);
  }

  /** Drop every page reference of `seqId` (pages reach the free list when no holder is left). */
  freeSequence(seqId: number): void {
    const table = this.tables.get(seqId);
    if (!table) return;
    this.tables.delete(seqId);
    for (const page of table) {
      const left = --this.refCounts[page]!;
      if (left === 0) this.free.push(page);
      else if (left < 0) throw new Error(`KvBlockAllocator: page ${page} freed more often than held`);
    }
  }

  /** A copy of `seqId`'s block table, as the engine receives it. */
  blockTable(seqId: number): Int32Array {
    return Int32Array.from(this.tables.get(seqId) ?? []);
  }

  refCount(page: number): number {
    return this.refCounts[page] ?? 0;
  }

  /** Sequences holding pages (tests: zero after the load). */
  get sequenceCount(): number {
    return this.tables.size;
  }
}

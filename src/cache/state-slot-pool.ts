/**
 * StateSlotPool: which Mamba2 state slot belongs to which sequence. A fixed pool (sized once at
 * start-up); a sequence holds one slot from admission to finish or preemption. Called by
 * HybridCache only (the scheduler goes through HybridCache).
 *
 * A slot handed out by `acquire()` is queued for reset: the scheduler drains the queue into the next
 * StepPlan's `resetSlots`, so the engine zeroes it before the new sequence's first chunk. A slot
 * acquired as the target of `copySlot` skips the reset (the copy overwrites the whole state, and a
 * reset would run after the copy and wipe it).
 */
export class StateSlotPool {
  /** Free slots, used as a stack (recently freed slots are reused first). */
  private readonly free: number[];
  private readonly inUse: Uint8Array;
  private pendingResets = new Set<number>();

  constructor(readonly slotCount: number) {
    if (!(Number.isInteger(slotCount) && slotCount > 0)) throw new RangeError(`slotCount must be a positive integer, got ${slotCount}`);
    this.inUse = new Uint8Array(slotCount);
    this.free = Array.from({ length: slotCount }, (_, i) => slotCount - 1 - i);
  }

  get freeCount(): number {
    return this.free.length;
  }

  get usedCount(): number {
    return this.slotCount - this.free.length;
  }

  get usageFraction(): number {
    return this.usedCount / this.slotCount;
  }

  /** A free slot, or null when none is left. `reset: false` only for a slot about to be a copySlot target. */
  acquire(options: { reset: boolean } = { reset: true }): number | null {
    const slot = this.free.pop();
    if (slot === undefined) return null;
    this.inUse[slot] = 1;
    if (options.reset) this.pendingResets.add(slot);
    else this.pendingResets.delete(slot);
    return slot;
  }

  release(slot: number): void {
    if (this.inUse[slot] !== 1) throw new Error(`StateSlotPool: release of slot ${slot}, which is not in use`);
    this.inUse[slot] = 0;
    // A slot freed before its reset reached the engine needs none now: the next acquire queues one.
    this.pendingResets.delete(slot);
    this.free.push(slot);
  }

  isInUse(slot: number): boolean {
    return this.inUse[slot] === 1;
  }

  /** Slots to zero in the next step (and forget them). Called by the scheduler when building a plan. */
  takePendingResets(): Int32Array {
    const out = Int32Array.from(this.pendingResets);
    this.pendingResets = new Set();
    return out;
  }
}

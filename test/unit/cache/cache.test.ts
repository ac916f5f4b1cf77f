import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HybridCache, KvBlockAllocator, StateSlotPool, planCacheSizes } from '../../../src/cache/index.js';
import { FakeEngine } from '../../../src/engine/fake/fake-engine.js';

describe('StateSlotPool', () => {
  it('hands out every slot once, queues resets, and refuses when empty', () => {
    const pool = new StateSlotPool(3);
    const got = [pool.acquire(), pool.acquire(), pool.acquire()];
    assert.deepEqual([...got].sort(), [0, 1, 2]);
    assert.equal(pool.acquire(), null);
    assert.deepEqual([...pool.takePendingResets()].sort(), [0, 1, 2]);
    assert.deepEqual([...pool.takePendingResets()], []);
    pool.release(1);
    assert.equal(pool.freeCount, 1);
    assert.equal(pool.acquire(), 1, 'the freed slot is reused');
    assert.deepEqual([...pool.takePendingResets()], [1], 'and zeroed again before reuse');
  });

  it('a copy target skips the reset; a slot released before its reset needs none', () => {
    const pool = new StateSlotPool(2);
    const a = pool.acquire()!;
    pool.release(a);
    assert.deepEqual([...pool.takePendingResets()], []);
    const b = pool.acquire({ reset: false })!;
    assert.deepEqual([...pool.takePendingResets()], []);
    assert.ok(pool.isInUse(b));
    assert.throws(() => pool.release(a === b ? 1 - b : a), /not in use/);
  });

  it('rejects a bad size', () => {
    assert.throws(() => new StateSlotPool(0), RangeError);
  });
});

describe('KvBlockAllocator', () => {
  it('allocates pages on demand as positions grow, all or nothing', () => {
    const kv = new KvBlockAllocator(4);
    assert.ok(kv.allocate(1, 1));
    assert.equal(kv.blockTable(1).length, 1);
    assert.ok(kv.allocate(1, 16));
    assert.equal(kv.blockTable(1).length, 1, 'position 15 still in page 0');
    assert.ok(kv.allocate(1, 17));
    assert.equal(kv.blockTable(1).length, 2);
    assert.equal(kv.missingPages(2, 48), 3);
    assert.equal(kv.allocate(2, 48), false, 'only 2 pages left');
    assert.equal(kv.usedCount, 2, 'a failed allocation takes nothing');
    assert.ok(kv.allocate(2, 32));
    assert.equal(kv.usageFraction, 1);
    kv.freeSequence(1);
    kv.freeSequence(2);
    assert.equal(kv.usedCount, 0);
    assert.equal(kv.sequenceCount, 0);
  });

  it('shares pages by reference and frees them with the last holder', () => {
    const kv = new KvBlockAllocator(8);
    kv.allocate(1, 40); // 3 pages
    kv.share(1, 2, 2);
    const parent = [...kv.blockTable(1)];
    assert.deepEqual([...kv.blockTable(2)], parent.slice(0, 2));
    assert.equal(kv.refCount(parent[0]!), 2);
    kv.allocate(2, 40);
    assert.notEqual(kv.blockTable(2)[2], parent[2], 'the child grows into a page of its own');
    kv.freeSequence(1);
    assert.equal(kv.usedCount, 3, 'shared pages live on with the child');
    assert.equal(kv.refCount(parent[0]!), 1);
    kv.freeSequence(2);
    assert.equal(kv.usedCount, 0);
    assert.throws(() => kv.share(9, 10, 1), /holds 0/);
  });

  it('never leaks or double-frees under random allocate/share/free (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ op: fc.constantFrom('grow', 'share', 'free'), seq: fc.integer({ min: 0, max: 5 }), other: fc.integer({ min: 0, max: 5 }), tokens: fc.integer({ min: 1, max: 80 }) }), { maxLength: 60 }),
        (ops) => {
          const kv = new KvBlockAllocator(12);
          const live = new Set<number>();
          for (const o of ops) {
            if (o.op === 'grow') {
              if (kv.allocate(o.seq, o.tokens)) live.add(o.seq);
            } else if (o.op === 'share' && live.has(o.seq) && !live.has(o.other) && o.seq !== o.other) {
              kv.share(o.seq, o.other, Math.min(kv.blockTable(o.seq).length, Math.floor(o.tokens / 16)));
              live.add(o.other);
            } else if (o.op === 'free') {
              kv.freeSequence(o.seq);
              live.delete(o.seq);
            }
            // Used pages = distinct pages in live tables; each page's refcount = number of tables holding it.
            const holders = new Map<number, number>();
            for (const s of live) for (const p of kv.blockTable(s)) holders.set(p, (holders.get(p) ?? 0) + 1);
            assert.equal(kv.usedCount, holders.size);
            for (const [p, n] of holders) assert.equal(kv.refCount(p), n);
          }
          for (const s of live) kv.freeSequence(s);
          assert.equal(kv.usedCount, 0);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('HybridCache', () => {
  it('admits only when a slot and the first chunk pages both fit, and frees both together', () => {
    const cache = new HybridCache({ slotCount: 2, pageCount: 4 });
    const slot = cache.admit(1, 40);
    assert.notEqual(slot, null);
    assert.equal(cache.slotOf(1), slot);
    assert.equal(cache.blockTable(1).length, 3);
    assert.equal(cache.canAdmit(17), false, 'pages short');
    assert.equal(cache.admit(2, 17), null);
    assert.equal(cache.slots.usedCount, 1, 'nothing taken by a refused admission');
    assert.notEqual(cache.admit(2, 16), null);
    assert.equal(cache.canAdmit(1), false, 'slots short');
    cache.free(1);
    cache.free(1);
    assert.equal(cache.slots.usedCount, 1);
    assert.equal(cache.pages.usedCount, 1);
    cache.free(2);
    assert.equal(cache.sequenceCount, 0);
  });

  it('forks at a page boundary: fresh slot without reset, full pages shared', () => {
    const cache = new HybridCache({ slotCount: 3, pageCount: 8 });
    const parentSlot = cache.admit(1, 32)!;
    cache.takePendingResets();
    const childSlot = cache.fork(1, 2, 32)!;
    assert.notEqual(childSlot, parentSlot);
    assert.deepEqual([...cache.takePendingResets()], []);
    assert.deepEqual([...cache.blockTable(2)], [...cache.blockTable(1)]);
    assert.throws(() => cache.fork(1, 3, 20), /page boundary/);
    cache.fork(1, 3, 16);
    assert.equal(cache.fork(1, 4, 16), null, 'no slot left');
    cache.free(1);
    cache.free(2);
    cache.free(3);
    assert.equal(cache.pages.usedCount, 0);
    assert.equal(cache.slots.usedCount, 0);
  });
});

describe('planCacheSizes', () => {
  it('gives every possible sequence a slot and the rest of the budget to pages', () => {
    const d = new FakeEngine({ stateSlotBytes: 100, kvPageBytes: 10, cacheBudgetBytes: 10_000 }).describe();
    assert.deepEqual(planCacheSizes(d, { maxNumSeqs: 8 }), { slotCount: 8, pageCount: 920 });
    assert.deepEqual(planCacheSizes(d, { maxNumSeqs: 8, cacheFraction: 0.5 }), { slotCount: 8, pageCount: 420 });
  });

  it('gives slots back while pages would be fewer than slots', () => {
    const d = new FakeEngine({ stateSlotBytes: 100, kvPageBytes: 10, cacheBudgetBytes: 1000 }).describe();
    assert.deepEqual(planCacheSizes(d, { maxNumSeqs: 64 }), { slotCount: 9, pageCount: 10 });
  });

  it('is bounded by the engine per-step sequence limit', () => {
    const d = new FakeEngine({ maxSequencesPerStep: 4 }).describe();
    assert.equal(planCacheSizes(d, { maxNumSeqs: 64 }).slotCount, 4);
  });

  it('fails clearly when not even one slot and one page fit', () => {
    const d = new FakeEngine({ stateSlotBytes: 100, kvPageBytes: 10, cacheBudgetBytes: 105 }).describe();
    assert.throws(() => planCacheSizes(d, { maxNumSeqs: 4 }), /cannot hold one state slot \(100 bytes\) and one KV page \(10 bytes\)/);
    assert.throws(() => planCacheSizes(d, { maxNumSeqs: 4, cacheFraction: 0 }), RangeError);
  });
});

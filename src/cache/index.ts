/**
 * cache/: memory bookkeeping for hybrid Mamba2 + attention sequences, ids only (no tensors).
 *
 * Ownership: the engine owns the bytes (state tensors, KV pages); this module owns which state
 * slot and which KV page ids belong to which sequence. `planCacheSizes` turns engine.describe()
 * into pool sizes once at start-up (the scheduler hands them to engine.initCache); `HybridCache`
 * then admits a sequence only when a slot and its first chunk's pages both fit, grows its page
 * table on demand, shares full pages by reference for n > 1 forks, and frees slot and pages together
 * on every exit path (finish, abort, error, preemption). Only the scheduler loop calls it.
 */
export { StateSlotPool } from './state-slot-pool.js';
export { KvBlockAllocator } from './kv-block-allocator.js';
export { HybridCache, planCacheSizes, type CacheSizingOptions } from './hybrid-cache.js';

/**
 * scheduler/: continuous batching. Decides *what* runs in each engine step (never where its memory
 * is: cache/; never how it is computed: engine/). Owns the waiting queue, the running set,
 * admission (FCFS while a state slot, KV pages and the step's token budget allow), chunked prefill,
 * preemption by recompute, n > 1 forks, stop conditions on token ids, and the per-request event
 * streams that serving/ iterates. types.ts is the contract with serving/.
 */
export { Scheduler, type SchedulerDeps, type SchedulerLogger } from './scheduler.js';
export * from './types.js';

/**
 * Throughput of the CPU engine on one checkpoint, through the Engine seam (not a test):
 *   node --import tsx src/engine/cpu/bench-cpu.ts --model DIR [--threads N] [--prompt 256]
 *        [--chunk 256] [--decode 32] [--batches 1,8]
 * Prints build time, prefill tokens/s (one sequence, chunked at --chunk) and decode tokens/s for each
 * batch size (all sequences decoding together, after their prompts are in), plus the process CPU
 * time per token (all threads): on a shared machine wall time depends on the neighbours, CPU time
 * much less.
 */
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadCheckpoint } from '../../model/index.js';
import { GREEDY, type ScheduledSequence } from '../engine.js';
import { CpuEngine } from './cpu-engine.js';
import { TOKENS_PER_PAGE } from './cache-pools.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    threads: { type: 'string' },
    prompt: { type: 'string', default: '256' },
    chunk: { type: 'string', default: '256' },
    decode: { type: 'string', default: '32' },
    batches: { type: 'string', default: '1,8' },
    'no-prepack': { type: 'boolean', default: false },
  },
});
if (values.model === undefined) throw new Error('--model DIR is required');
const threads = Number(values.threads ?? availableParallelism());
const promptLen = Number(values.prompt);
const chunkLen = Number(values.chunk);
const decodeSteps = Number(values.decode);
const batches = values.batches.split(',').map(Number);
const maxBatch = Math.max(...batches);

const t0 = performance.now();
const ckpt = await loadCheckpoint(values.model);
const engine = await CpuEngine.create(ckpt.dims, ckpt.weights, {
  threads,
  maxTokensPerStep: Math.max(chunkLen, maxBatch),
  maxSequencesPerStep: maxBatch,
  cacheBudgetBytes: Number.MAX_SAFE_INTEGER,
  session: values['no-prepack'] ? { sessionConfig: { 'session.disable_prepacking': '1' } } : {},
  logger: { info: (o) => console.log(JSON.stringify(Object.fromEntries(Object.entries(o).filter(([k]) => /Ms$|external/.test(k))))) },
});
ckpt.close();
const buildS = (performance.now() - t0) / 1000;
const d = engine.describe();
const totalLen = promptLen + decodeSteps + 1;
const pagesPerSeq = Math.ceil(totalLen / TOKENS_PER_PAGE);
await engine.initCache({ slotCount: maxBatch, pageCount: maxBatch * pagesPerSeq });
console.log(`model ${values.model}: vocab ${d.vocabSize}, ${d.mambaLayerCount} layers (${d.attentionLayerCount} attention), ${threads} threads, build+load ${buildS.toFixed(1)} s`);

function cpuSecondsSince(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

let stepId = 0;
const tokensOf = (seed: number, n: number) => Int32Array.from({ length: n }, (_, i) => 3 + ((seed * 7919 + i * 104729) % (d.vocabSize - 3)));
const seq = (i: number, start: number, tokens: Int32Array, sample: boolean): ScheduledSequence => ({
  seqId: i,
  slot: i,
  pageTable: Int32Array.from({ length: pagesPerSeq }, (_, p) => i * pagesPerSeq + p),
  startPosition: start,
  tokens,
  promptLength: promptLen,
  sample,
  sampling: GREEDY,
  promptLogprobs: null,
});

for (const B of batches) {
  // prefill every sequence, one chunk per step
  const lastTokens: number[] = [];
  let prefillMs = 0;
  const prefillCpu0 = process.cpuUsage();
  for (let i = 0; i < B; i++) {
    const prompt = tokensOf(i, promptLen);
    for (let start = 0; start < promptLen; start += chunkLen) {
      const end = Math.min(promptLen, start + chunkLen);
      const t = performance.now();
      const r = await engine.step({
        stepId: stepId++,
        sequences: [seq(i, start, prompt.subarray(start, end), end === promptLen)],
        resetSlots: start === 0 ? Int32Array.of(i) : new Int32Array(0),
        releasedSeqIds: [],
      });
      prefillMs += performance.now() - t;
      if (end === promptLen) lastTokens[i] = r.outputs[0]!.token;
    }
  }
  const prefillCpuS = cpuSecondsSince(prefillCpu0);
  let decodeMs = 0;
  const decodeCpu0 = process.cpuUsage();
  for (let k = 0; k < decodeSteps; k++) {
    const t = performance.now();
    const r = await engine.step({
      stepId: stepId++,
      sequences: lastTokens.map((tok, i) => seq(i, promptLen + k, Int32Array.of(tok), true)),
      resetSlots: new Int32Array(0),
      releasedSeqIds: [],
    });
    decodeMs += performance.now() - t;
    r.outputs.forEach((o, i) => (lastTokens[i] = o.token));
  }
  const decodeCpuS = cpuSecondsSince(decodeCpu0);
  console.log(
    `batch ${B}: prefill ${((B * promptLen) / (prefillMs / 1000)).toFixed(1)} tok/s (${B}×${promptLen} tokens, chunks of ${chunkLen}; ` +
      `${((prefillCpuS * 1000) / (B * promptLen)).toFixed(1)} CPU-ms/token); ` +
      `decode ${((B * decodeSteps) / (decodeMs / 1000)).toFixed(2)} tok/s (${(decodeMs / decodeSteps).toFixed(1)} ms/step, ` +
      `${((decodeCpuS * 1000) / (B * decodeSteps)).toFixed(1)} CPU-ms/token)`,
  );
}
await engine.close();

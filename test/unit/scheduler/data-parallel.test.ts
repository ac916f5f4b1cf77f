/**
 * DataParallelScheduler over real Schedulers and FakeEngines: least-loaded routing, tie-breaks on
 * KV pages, overload and dead-replica fallback, aggregated stats, drain and close across replicas.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/engine.js';
import type { FakeEngine, FakeEngineOptions } from '../../../src/engine/fake/fake-engine.js';
import { DataParallelScheduler, replicaOrder } from '../../../src/scheduler/data-parallel.js';
import { SchedulerRejection, type SchedulerOptions, type SchedulerStats } from '../../../src/scheduler/types.js';
import { startTestServer } from '../../helpers/start-server.js';
import { collect, prompt, request, runAlone, startScheduler, ticks } from './scheduler-harness.js';

async function startReplicas(count: number, engineOptions: (i: number) => FakeEngineOptions = () => ({}), options: Partial<SchedulerOptions> = {}) {
  const started = await Promise.all(Array.from({ length: count }, (_, i) => startScheduler(engineOptions(i), options)));
  const dp = new DataParallelScheduler(started.map((s) => s.scheduler));
  return { dp, replicas: started.map((s) => s.scheduler), engines: started.map((s) => s.engine) };
}

function stats(running: number, waiting: number, pagesUsed: number): SchedulerStats {
  return { running, waiting, pagesUsed, preemptedTotal: 0, slotsUsed: running, slotsTotal: 8, pagesTotal: 64 };
}

test('replicaOrder: least running + waiting first, then fewest KV pages, then lowest index', () => {
  assert.deepEqual(replicaOrder([stats(2, 1, 5), stats(1, 0, 9), stats(0, 1, 3)]), [2, 1, 0]);
  assert.deepEqual(replicaOrder([stats(1, 0, 9), stats(1, 0, 3), stats(0, 1, 3)]), [1, 2, 0]);
  assert.deepEqual(replicaOrder([stats(0, 0, 0), stats(0, 0, 0)]), [0, 1]);
});

test('a burst is spread evenly; a busy replica gets new requests only once the others catch up', async () => {
  const { dp, replicas } = await startReplicas(3, () => ({ stepLatencyMs: 5 }));
  try {
    // Submitted synchronously: no step runs in between, so only the waiting queues tell them apart.
    const handles = Array.from({ length: 7 }, (_, i) => dp.submit(request({ requestId: `b${i}`, promptTokens: prompt(8, i), maxTokens: 4 })));
    assert.deepEqual(replicas.map((r) => r.stats().waiting), [3, 2, 2]);
    assert.equal(dp.stats().waiting, 7);
    await Promise.all(handles.map((h) => collect(h)));

    // One long request keeps replica 0 busy; the next two go to the idle replicas 1 and 2 first.
    const long = dp.submit(request({ requestId: 'long', promptTokens: prompt(40, 99), maxTokens: 50, ignoreEos: true }));
    await ticks(20);
    assert.equal(replicas[0]!.stats().running, 1);
    const a = dp.submit(request({ requestId: 'a', promptTokens: prompt(4, 1), maxTokens: 2 }));
    const b = dp.submit(request({ requestId: 'b', promptTokens: prompt(4, 2), maxTokens: 2 }));
    assert.deepEqual(replicas.map((r) => r.stats().running + r.stats().waiting), [1, 1, 1]);
    // All three carry one sequence now; replica 0's long prompt holds the most KV pages, so a
    // fourth request goes to the replica with fewer pages (1 or 2), not to replica 0.
    const c = dp.submit(request({ requestId: 'c', promptTokens: prompt(4, 3), maxTokens: 2 }));
    assert.equal(replicas[0]!.stats().running + replicas[0]!.stats().waiting, 1);
    await Promise.all([collect(long), collect(a), collect(b), collect(c)]);
    await ticks(10);
    assert.equal(dp.liveSequenceMemory, 0);
    assert.deepEqual({ ...dp.stats(), slotsTotal: 0, pagesTotal: 0 }, { running: 0, waiting: 0, preemptedTotal: 0, slotsUsed: 0, slotsTotal: 0, pagesUsed: 0, pagesTotal: 0 });
    assert.equal(dp.stats().slotsTotal, replicas.reduce((s, r) => s + r.stats().slotsTotal, 0));
  } finally {
    await dp.close();
  }
});

test('outputs do not depend on the replica a request lands on', async () => {
  const { dp } = await startReplicas(2);
  try {
    const reqs = Array.from({ length: 6 }, (_, i) => request({ requestId: `d${i}`, promptTokens: prompt(10 + i, i), maxTokens: 12, ignoreEos: true }));
    const viaDp = await Promise.all(reqs.map((r) => collect(dp.submit(r))));
    for (let i = 0; i < reqs.length; i++) {
      const alone = await runAlone({}, reqs[i]!);
      assert.deepEqual(viaDp[i]!.tokens, alone.tokens, `request ${i}`);
    }
  } finally {
    await dp.close();
  }
});

test('a full replica is skipped; overloaded only when every replica is full', async () => {
  const { dp, replicas } = await startReplicas(2, () => ({ stepLatencyMs: 20 }), { maxWaiting: 1 });
  try {
    const first = dp.submit(request({ requestId: 'f1', promptTokens: prompt(4, 1), maxTokens: 2 }));
    const second = dp.submit(request({ requestId: 'f2', promptTokens: prompt(4, 2), maxTokens: 2 }));
    assert.deepEqual(replicas.map((r) => r.stats().waiting), [1, 1]);
    assert.throws(
      () => dp.submit(request({ requestId: 'f3', promptTokens: prompt(4, 3), maxTokens: 2 })),
      (err: unknown) => err instanceof SchedulerRejection && err.reason === 'overloaded' && (err.retryAfterSeconds ?? 0) >= 1,
    );
    await Promise.all([collect(first), collect(second)]);
  } finally {
    await dp.close();
  }
});

test('too_long is refused at once, by the first replica asked', async () => {
  const { dp } = await startReplicas(2, () => ({}), { maxModelLen: 32 });
  try {
    assert.throws(
      () => dp.submit(request({ requestId: 'tl', promptTokens: prompt(40), maxTokens: 1 })),
      (err: unknown) => err instanceof SchedulerRejection && err.reason === 'too_long',
    );
  } finally {
    await dp.close();
  }
});

test('a replica whose engine died is routed around; the other keeps serving', async () => {
  let killReplica0 = false;
  const { dp, replicas } = await startReplicas(2, (i) =>
    i === 0 ? { failOnStep: () => (killReplica0 ? new EngineError('device lost', 'TEST_DEVICE_LOST', false) : undefined) } : {},
  );
  try {
    killReplica0 = true;
    // Lands on replica 0 (both idle, lowest index) and fails with the engine.
    const doomed = await collect(dp.submit(request({ requestId: 'doomed', promptTokens: prompt(6), maxTokens: 4 })));
    assert.equal(doomed.finishes[0]![0]!.reason, 'error');
    assert.throws(() => replicas[0]!.submit(request({ requestId: 'x', promptTokens: prompt(4), maxTokens: 1 })), SchedulerRejection);
    // Replica 0 looks idle (least loaded) but refuses; every request still completes on replica 1.
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) => collect(dp.submit(request({ requestId: `ok${i}`, promptTokens: prompt(6, i), maxTokens: 3, ignoreEos: true })))),
    );
    for (const r of results) assert.deepEqual(r.finishes[0]!.map((f) => f.reason), ['length']);
  } finally {
    await dp.close();
  }
});

test('drain stops admission on every replica and aborts what is left at the deadline', async () => {
  const { dp } = await startReplicas(2, () => ({ stepLatencyMs: 10 }));
  try {
    const short = dp.submit(request({ requestId: 's', promptTokens: prompt(4, 1), maxTokens: 2, ignoreEos: true }));
    const long = dp.submit(request({ requestId: 'l', promptTokens: prompt(4, 2), maxTokens: 10_000, ignoreEos: true }));
    const results = Promise.all([collect(short), collect(long)]);
    await dp.drain(300);
    assert.throws(
      () => dp.submit(request({ requestId: 'late', promptTokens: prompt(4), maxTokens: 1 })),
      (err: unknown) => err instanceof SchedulerRejection && err.reason === 'shutting_down',
    );
    const [s, l] = await results;
    assert.deepEqual(s.finishes[0]!.map((f) => f.reason), ['length']);
    assert.deepEqual(l.finishes[0]!.map((f) => f.reason), ['abort']);
    assert.equal(dp.liveSequenceMemory, 0);
  } finally {
    await dp.close();
  }
});

test('startServer with dataParallel 2: two engines behind one DataParallelScheduler, both doing work', async () => {
  const server = await startTestServer({ dataParallel: 2, fakeStepLatencyMs: 2 });
  try {
    assert.equal(server.engines.length, 2);
    assert.ok(server.scheduler instanceof DataParallelScheduler);
    const responses = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: `request ${i}`, max_tokens: 100, ignore_eos: true }) }),
      ),
    );
    for (const r of responses) assert.equal(r.status, 200);
    for (const engine of server.engines as FakeEngine[]) assert.ok(engine.stepsRun > 0, 'each replica ran steps');
    const stats = server.scheduler.stats();
    assert.equal(stats.slotsTotal, 2 * (server.scheduler as DataParallelScheduler).replicas[0]!.stats().slotsTotal);
  } finally {
    await server.stop();
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { driveRequests } from '../../../src/bench/drive.js';

test('closed loop keeps exactly `concurrency` requests in flight and returns results in item order', async () => {
  let open = 0;
  let maxOpen = 0;
  const items = Array.from({ length: 40 }, (_, i) => i);
  const run = await driveRequests({
    items,
    concurrency: 6,
    send: async (item) => {
      open += 1;
      maxOpen = Math.max(maxOpen, open);
      for (let k = 0; k < (item % 5) + 1; k++) await tick();
      open -= 1;
      return item * 10;
    },
  });
  assert.equal(maxOpen, 6);
  assert.deepEqual(run.results, items.map((i) => i * 10));
  assert.ok(run.durationMs >= 0);
});

test('open loop sends in send-time order and still respects the cap', async () => {
  const started: number[] = [];
  let open = 0;
  let maxOpen = 0;
  const run = await driveRequests({
    items: ['a', 'b', 'c', 'd'],
    concurrency: 2,
    sendOffsetsMs: [0, 0, 5, 5],
    send: async (_item, index) => {
      started.push(index);
      open += 1;
      maxOpen = Math.max(maxOpen, open);
      await tick();
      open -= 1;
      return index;
    },
  });
  assert.deepEqual(started, [0, 1, 2, 3]);
  assert.ok(maxOpen <= 2);
  assert.deepEqual(run.results, [0, 1, 2, 3]);
});

test('bad arguments are refused', async () => {
  await assert.rejects(driveRequests({ items: [1], concurrency: 0, send: async () => 1 }), RangeError);
  await assert.rejects(driveRequests({ items: [1, 2], concurrency: 1, sendOffsetsMs: [0], send: async () => 1 }), RangeError);
});

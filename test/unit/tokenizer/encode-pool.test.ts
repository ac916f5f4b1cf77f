import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EncodePool, EncodePoolBusyError, EncodePoolClosedError, PromptEncoder } from '../../../src/tokenizer/index.js';
import { InputProcessor, ServingError } from '../../../src/serving/index.js';
import { testTokenizer } from '../../helpers/tokenizer-fixture.js';

const tok = testTokenizer();
const source = tok.encoderSource!;
// One pool of two workers for the property tests (a worker loads its own tokenizer: ~0.5 s each).
const shared = new EncodePool(source, 2);
after(() => shared.close());

/** Words, whitespace runs, specials and multi-byte text (accents, CJK, emoji, ZWJ sequences, lone surrogates). */
const promptText = fc
  .array(
    fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.constantFrom(' ', '\n', '\t', '  ', 'Hello', ' world', 'naïve', '日本語', '🙂', '👩‍💻', 'é', '<s>', '</s>', '\uD800', 'def f(x):'),
    ),
    { maxLength: 30 },
  )
  .map((parts) => parts.join(''));

test('pooled encoding equals inline encoding for random text, with and without special tokens', async () => {
  assert.ok(tok.encoderSource, 'loadTokenizer keeps the files a worker needs');
  await fc.assert(
    fc.asyncProperty(promptText, fc.boolean(), async (text, addSpecialTokens) => {
      const pooled = await shared.encode(text, { addSpecialTokens });
      assert.deepEqual(pooled, tok.encode(text, { addSpecialTokens }));
    }),
    { numRuns: 150 },
  );
});

test('many concurrent tasks each get their own ids back', async () => {
  const texts = await fc.assert(
    fc.asyncProperty(fc.array(promptText, { minLength: 2, maxLength: 12 }), async (batch) => {
      const pooled = await Promise.all(batch.map((t) => shared.encode(t, { addSpecialTokens: true })));
      assert.deepEqual(
        pooled,
        batch.map((t) => tok.encode(t, { addSpecialTokens: true })),
      );
    }),
    { numRuns: 20 },
  );
  assert.equal(texts, undefined);
  assert.deepEqual(shared.stats(), { workers: 2, running: 0, queued: 0 });
});

test('a long multi-byte prompt encodes the same in a worker', async () => {
  const text = 'Ünïcödé 漢字 🙂 and ASCII words, '.repeat(400);
  assert.deepEqual(await shared.encode(text, { addSpecialTokens: true }), tok.encode(text, { addSpecialTokens: true }));
});

test('an aborted task is dropped from the queue; the others still finish', async () => {
  const pool = new EncodePool(source, 1);
  try {
    const long = 'word '.repeat(4000);
    const controller = new AbortController();
    const first = pool.encode(long, { addSpecialTokens: true });
    const dropped = pool.encode(long, { addSpecialTokens: true }, controller.signal);
    const third = pool.encode('third one', { addSpecialTokens: false });
    assert.equal(pool.stats().queued, 2);
    controller.abort();
    await assert.rejects(dropped, { name: 'AbortError' });
    assert.equal(pool.stats().queued, 1);
    assert.deepEqual(await first, tok.encode(long, { addSpecialTokens: true }));
    assert.deepEqual(await third, tok.encode('third one', { addSpecialTokens: false }));
    const already = AbortSignal.abort();
    await assert.rejects(pool.encode('x', { addSpecialTokens: true }, already), { name: 'AbortError' });
    assert.deepEqual(pool.stats(), { workers: 1, running: 0, queued: 0 });
  } finally {
    await pool.close();
  }
});

test('a full queue refuses the next task (EncodePoolBusyError → overloaded) and accepts again once it drains', async () => {
  const pool = new EncodePool(source, 1, 2);
  const processor = new InputProcessor(tok, 100_000, new PromptEncoder(tok, { pool, minPooledChars: 0 }));
  try {
    const long = 'word '.repeat(4000);
    const running = pool.encode(long, { addSpecialTokens: true });
    const waiting = [pool.encode('one', { addSpecialTokens: true }), pool.encode('two', { addSpecialTokens: true })];
    assert.deepEqual(pool.stats(), { workers: 1, running: 1, queued: 2 });
    await assert.rejects(pool.encode('three', { addSpecialTokens: true }), EncodePoolBusyError);
    await assert.rejects(
      processor.completionPrompt('four'),
      (err: unknown) => err instanceof ServingError && err.reason === 'overloaded' && err.retryAfterSeconds === 1,
    );
    assert.equal(pool.stats().queued, 2, 'refused tasks never entered the queue');
    assert.deepEqual(await running, tok.encode(long, { addSpecialTokens: true }));
    assert.deepEqual(await Promise.all(waiting), [tok.encode('one', { addSpecialTokens: true }), tok.encode('two', { addSpecialTokens: true })]);
    assert.deepEqual(await pool.encode('five', { addSpecialTokens: true }), tok.encode('five', { addSpecialTokens: true }));
  } finally {
    await pool.close();
  }
});

test('maxQueued 0: a task is taken only by an idle (or not yet started) worker', async () => {
  const pool = new EncodePool(source, 1, 0);
  try {
    const first = pool.encode('word '.repeat(4000), { addSpecialTokens: true });
    await assert.rejects(pool.encode('second', { addSpecialTokens: true }), EncodePoolBusyError);
    await first;
    assert.deepEqual(await pool.encode('third', { addSpecialTokens: true }), tok.encode('third', { addSpecialTokens: true }));
  } finally {
    await pool.close();
  }
});

test('close rejects queued and running tasks and later calls', async () => {
  const pool = new EncodePool(source, 1);
  const running = pool.encode('word '.repeat(4000), { addSpecialTokens: true });
  const queued = pool.encode('queued', { addSpecialTokens: true });
  const outcomes = [assert.rejects(running, EncodePoolClosedError), assert.rejects(queued, EncodePoolClosedError)];
  await pool.close();
  await Promise.all(outcomes);
  await assert.rejects(pool.encode('late', { addSpecialTokens: true }), EncodePoolClosedError);
  await pool.close();
});

test('PromptEncoder keeps short prompts inline and sends long ones to the pool', async () => {
  const pool = new EncodePool(source, 1);
  try {
    const encoder = new PromptEncoder(tok, { pool, minPooledChars: 100 });
    assert.deepEqual(await encoder.encode('short', { addSpecialTokens: true }), tok.encode('short', { addSpecialTokens: true }));
    assert.equal(pool.stats().workers, 0, 'no worker started for a short prompt');
    const long = 'a longer prompt '.repeat(10);
    assert.deepEqual(await encoder.encode(long, { addSpecialTokens: true }), tok.encode(long, { addSpecialTokens: true }));
    assert.equal(pool.stats().workers, 1);
  } finally {
    await pool.close();
  }
});

test('InputProcessor: pooled prompts match inline ones; abort → cancelled, closed pool → shutting_down', async () => {
  const pool = new EncodePool(source, 1);
  const inline = new InputProcessor(tok, 100_000);
  const pooled = new InputProcessor(tok, 100_000, new PromptEncoder(tok, { pool, minPooledChars: 0 }));
  const messages = [{ role: 'user', content: 'Grüße aus Köln 🙂 '.repeat(50) }];
  assert.deepEqual(await pooled.chatPrompt(messages), await inline.chatPrompt(messages));
  assert.deepEqual(await pooled.completionPrompt('héllo wörld'), await inline.completionPrompt('héllo wörld'));
  const controller = new AbortController();
  const cancelled = pooled.completionPrompt('word '.repeat(4000), 'prompt', controller.signal);
  controller.abort();
  await assert.rejects(cancelled, (err: unknown) => err instanceof ServingError && err.reason === 'cancelled');
  await pool.close();
  await assert.rejects(pooled.completionPrompt('after close'), (err: unknown) => err instanceof ServingError && err.reason === 'shutting_down');
});

test('a worker that cannot start fails its task with an error (a 500 upstream) and is retried per task, never in a loop', async () => {
  const pool = new EncodePool({ tokenizerJson: { model: { type: 'NoSuchModel' } }, tokenizerConfig: {} }, 1);
  try {
    await assert.rejects(pool.encode('x'.repeat(10), { addSpecialTokens: true }), Error);
    assert.deepEqual(pool.stats(), { workers: 0, running: 0, queued: 0 });
    const both = [pool.encode('a', { addSpecialTokens: true }), pool.encode('b', { addSpecialTokens: true })];
    for (const outcome of await Promise.allSettled(both)) assert.equal(outcome.status, 'rejected');
    assert.deepEqual(pool.stats(), { workers: 0, running: 0, queued: 0 });
  } finally {
    await pool.close();
  }
});

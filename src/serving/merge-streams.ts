/**
 * Interleaves several async streams (one per prompt of a batched /v1/completions request) in
 * arrival order. Returning early closes every source, so their sequences are cancelled.
 */
export async function* mergeStreams<T>(sources: readonly AsyncIterable<T>[]): AsyncGenerator<{ source: number; value: T }> {
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ source: number; result: IteratorResult<T> }>>();
  const pull = (i: number): void => {
    pending.set(i, iterators[i]!.next().then((result) => ({ source: i, result })));
  };
  iterators.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { source, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(source);
        continue;
      }
      pull(source);
      yield { source, value: result.value };
    }
  } finally {
    // Close the sources still running (early return or an error in one of them).
    await Promise.allSettled([...pending.keys()].map((i) => iterators[i]!.return?.()));
  }
}

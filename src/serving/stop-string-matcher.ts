/**
 * Stop strings for one completion. Text is released only when it can no longer be the start of a
 * stop string, so a stop string split across tokens ("\n" + "User:") never leaks: the longest
 * suffix of the pending text that is a prefix of some stop string is held back until the next
 * text decides it.
 *
 * One instance per completion, owned by the output processor.
 */
export interface StopMatch {
  /** Text that is now final. */
  text: string;
  /** The stop string that matched (generation must end), or null. */
  stop: string | null;
}

export class StopStringMatcher {
  private held = '';
  private readonly stops: readonly string[];

  constructor(
    stops: readonly string[],
    private readonly includeStopInOutput = false,
  ) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(text: string): StopMatch {
    if (this.stops.length === 0) return { text, stop: null };
    this.held += text;
    let best: { at: number; stop: string } | null = null;
    for (const stop of this.stops) {
      const at = this.held.indexOf(stop);
      if (at >= 0 && (best === null || at < best.at || (at === best.at && stop.length > best.stop.length))) best = { at, stop };
    }
    if (best !== null) {
      const end = this.includeStopInOutput ? best.at + best.stop.length : best.at;
      const out = this.held.slice(0, end);
      this.held = '';
      return { text: out, stop: best.stop };
    }
    const keep = this.partialStopSuffixLength();
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text: out, stop: null };
  }

  /** The held-back text, when the completion ends for another reason. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `held` that is a proper prefix of a stop string. */
  private partialStopSuffixLength(): number {
    let longest = 0;
    for (const stop of this.stops) {
      const max = Math.min(stop.length - 1, this.held.length);
      for (let len = max; len > longest; len--) {
        if (this.held.endsWith(stop.slice(0, len))) {
          longest = len;
          break;
        }
      }
    }
    return longest;
  }
}

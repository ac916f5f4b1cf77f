/**
 * A byte-progress bar on a stream (stderr by default) for downloads and checkpoint writing. On a
 * TTY it redraws one line at most every 100 ms; elsewhere it prints a line per 10% so logs stay short.
 */
export interface ProgressBar {
  /** Adds `bytes` done; redraws when due. */
  advance(bytes: number): void;
  /** Final line; the bar ignores later calls. */
  done(): void;
  /** Ends the line where it stands (after an error); the bar ignores later calls. */
  stop(): void;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${u === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

export function createProgressBar(label: string, totalBytes: number, stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr, startBytes = 0): ProgressBar {
  let doneBytes = startBytes;
  let lastDrawMs = 0;
  let lastDecile = -1;
  let finished = false;
  const tty = stream.isTTY === true;
  const line = (): string => {
    const frac = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 1;
    const width = 24;
    const filled = Math.round(frac * width);
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(doneBytes)}/${formatBytes(totalBytes)}`;
  };
  const draw = (force: boolean): void => {
    if (tty) {
      const now = Date.now();
      if (!force && now - lastDrawMs < 100) return;
      lastDrawMs = now;
      stream.write(`\r${line()}`);
    } else {
      const decile = totalBytes > 0 ? Math.floor((doneBytes / totalBytes) * 10) : 10;
      if (!force && decile === lastDecile) return;
      lastDecile = decile;
      stream.write(`${line()}\n`);
    }
  };
  draw(true);
  return {
    advance(bytes) {
      if (finished) return;
      doneBytes += bytes;
      draw(false);
    },
    done() {
      if (finished) return;
      doneBytes = Math.max(doneBytes, totalBytes);
      if (tty) stream.write(`\r${line()}\n`);
      else if (lastDecile !== 10) stream.write(`${line()}\n`);
      finished = true;
    },
    stop() {
      if (finished) return;
      if (tty) stream.write('\n');
      finished = true;
    },
  };
}

/**
 * The one table a bench run prints: a row per metric, a column per phase (and, with a baseline,
 * the baseline's value and a speedup column next to each). Written as a Markdown pipe table so it
 * can be pasted into docs/benchmarks.md unchanged.
 */
import type { HttpSummary, StreamSummary } from './stats.js';

export type PhaseSummary = StreamSummary | HttpSummary;

export interface TableColumn {
  /** Phase name ("chat-short", "rate=4", "http"). */
  name: string;
  ours: PhaseSummary;
  baseline: PhaseSummary | null;
}

interface MetricRow {
  label: string;
  /** Which way is better, for the speedup column; null = no speedup (counts). */
  better: 'higher' | 'lower' | null;
  value: (summary: PhaseSummary) => number | string | null;
}

const streamOnly =
  (pick: (s: StreamSummary) => number) =>
  (s: PhaseSummary): number | null =>
    s.kind === 'stream' ? pick(s) : null;

const ROWS: MetricRow[] = [
  { label: 'requests ok / sent', better: null, value: (s) => `${s.requestsOk} / ${s.requestsTotal}` },
  { label: 'requests/s', better: 'higher', value: (s) => s.requestsPerS },
  { label: 'output tokens/s', better: 'higher', value: streamOnly((s) => s.outputTokensPerS) },
  { label: 'total tokens/s', better: 'higher', value: streamOnly((s) => s.totalTokensPerS) },
  { label: 'prompt tokens (mean)', better: null, value: streamOnly((s) => s.promptTokensMean) },
  { label: 'output tokens (mean)', better: null, value: streamOnly((s) => s.outputTokensMean) },
  { label: 'TTFT p50 ms', better: 'lower', value: streamOnly((s) => s.ttftMs.p50) },
  { label: 'TTFT p90 ms', better: 'lower', value: streamOnly((s) => s.ttftMs.p90) },
  { label: 'TTFT p99 ms', better: 'lower', value: streamOnly((s) => s.ttftMs.p99) },
  { label: 'TPOT p50 ms', better: 'lower', value: streamOnly((s) => s.tpotMs.p50) },
  { label: 'TPOT p90 ms', better: 'lower', value: streamOnly((s) => s.tpotMs.p90) },
  { label: 'TPOT p99 ms', better: 'lower', value: streamOnly((s) => s.tpotMs.p99) },
  { label: 'ITL p50 ms', better: 'lower', value: streamOnly((s) => s.itlMs.p50) },
  { label: 'ITL p90 ms', better: 'lower', value: streamOnly((s) => s.itlMs.p90) },
  { label: 'ITL p99 ms', better: 'lower', value: streamOnly((s) => s.itlMs.p99) },
  { label: 'E2E p50 ms', better: 'lower', value: (s) => (s.kind === 'stream' ? s.e2eMs.p50 : s.latencyMs.p50) },
  { label: 'E2E p90 ms', better: 'lower', value: (s) => (s.kind === 'stream' ? s.e2eMs.p90 : s.latencyMs.p90) },
  { label: 'E2E p99 ms', better: 'lower', value: (s) => (s.kind === 'stream' ? s.e2eMs.p99 : s.latencyMs.p99) },
  { label: 'wall µs / output token', better: 'lower', value: streamOnly((s) => s.wallUsPerOutputToken) },
  { label: 'errors', better: null, value: (s) => formatErrors(s.errorsByKind) },
];

export function formatErrors(errorsByKind: Record<string, number>): string {
  const entries = Object.entries(errorsByKind).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? '0' : entries.map(([kind, count]) => `${kind}: ${count}`).join(', ');
}

/** 3 significant digits, at least; integers as they are; NaN as "-". */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return '0';
  return value.toPrecision(3);
}

function formatCell(value: number | string | null): string {
  if (value === null) return '';
  return typeof value === 'number' ? formatNumber(value) : value;
}

function speedup(row: MetricRow, ours: PhaseSummary, baseline: PhaseSummary): string {
  const a = row.value(ours);
  const b = row.value(baseline);
  if (row.better === null || typeof a !== 'number' || typeof b !== 'number') return '';
  const ratio = row.better === 'higher' ? a / b : b / a;
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-';
}

/**
 * Rows of cells, header first. With a baseline, each phase takes three columns:
 * ours, baseline, speedup (> 1 means ours is better for that metric, whichever way is better).
 */
export function tableCells(columns: readonly TableColumn[], baselineLabel = 'baseline'): string[][] {
  const header = ['metric'];
  for (const column of columns) {
    header.push(column.name);
    if (column.baseline !== null) header.push(`${column.name} ${baselineLabel}`, 'speedup');
  }
  const rows: string[][] = [header];
  for (const row of ROWS) {
    const cells = [row.label];
    let anyValue = false;
    for (const column of columns) {
      const ours = row.value(column.ours);
      if (ours !== null) anyValue = true;
      cells.push(formatCell(ours));
      if (column.baseline !== null) {
        const base = row.value(column.baseline);
        if (base !== null) anyValue = true;
        cells.push(formatCell(base), speedup(row, column.ours, column.baseline));
      }
    }
    if (anyValue) rows.push(cells);
  }
  return rows;
}

/** A Markdown pipe table, columns padded so it also reads well in a terminal. */
export function renderTable(cells: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of cells) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 3, cell.length)));
  const line = (row: readonly string[]): string =>
    `| ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const [header, ...body] = cells;
  if (header === undefined) return '';
  const separator = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), separator, ...body.map(line)].join('\n');
}

/**
 * The rate sweep's picture: achieved output tokens/s (x) against latency (y), one point per offered
 * request rate, for ours and (dashed) the baseline. As the offered rate grows, throughput rises
 * until the server saturates and latency climbs: the knee is the useful operating point.
 */
import type { PhaseResult } from './run-bench.js';
import type { StreamSummary } from './stats.js';
import { renderLinePlot, type PlotSeries } from './svg-plot.js';

const SERIES = [
  { metric: 'TTFT p50', color: '#1f77b4', pick: (s: StreamSummary) => s.ttftMs.p50 },
  { metric: 'TTFT p99', color: '#ff7f0e', pick: (s: StreamSummary) => s.ttftMs.p99 },
  { metric: 'E2E p50', color: '#2ca02c', pick: (s: StreamSummary) => s.e2eMs.p50 },
] as const;

export function renderRateSweepPlot(workload: string, phases: readonly PhaseResult[], baselineName: string, subtitle: string): string {
  const series: PlotSeries[] = [];
  const streamPhases = phases.filter((p) => p.kind === 'stream');
  for (const side of ['ours', 'baseline'] as const) {
    for (const s of SERIES) {
      const points = streamPhases.flatMap((p) => {
        const summary = p[side];
        if (summary === null || summary.kind !== 'stream') return [];
        return [{ x: summary.outputTokensPerS, y: s.pick(summary), label: `${p.ratePerS ?? ''}/s` }];
      });
      if (points.length === 0) continue;
      series.push({ name: side === 'ours' ? s.metric : `${s.metric} (${baselineName})`, color: s.color, dashed: side === 'baseline', points });
    }
  }
  return renderLinePlot({
    title: `${workload}: throughput vs latency (labels: offered request rate)`,
    subtitle,
    widthPx: 860,
    xLabel: 'output tokens/s (achieved)',
    yLabel: 'latency, ms',
    series,
  });
}

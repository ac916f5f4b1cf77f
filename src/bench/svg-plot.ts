/**
 * A small line chart as hand-written SVG (no chart dependency): the rate sweep's
 * throughput-vs-latency plot. Axes start at zero, ticks at 1/2/5 × 10^k steps, one polyline per
 * series, each point labelled (with its request rate).
 */

export interface PlotPoint {
  x: number;
  y: number;
  /** Text next to the point ("4/s"). */
  label: string;
}

export interface PlotSeries {
  name: string;
  color: string;
  dashed: boolean;
  points: PlotPoint[];
}

export interface PlotSpec {
  title: string;
  /** Smaller line under the title (what was measured, on what). */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: PlotSeries[];
  widthPx?: number;
  heightPx?: number;
}

/** Tick step of about `targetTicks` ticks over [0, max]: 1, 2 or 5 times a power of ten. */
export function niceStep(max: number, targetTicks = 5): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const raw = max / targetTicks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function tickText(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(3).replace(/\.?0+$/, '');
}

export function renderLinePlot(spec: PlotSpec): string {
  const width = spec.widthPx ?? 760;
  const height = spec.heightPx ?? 460;
  const margin = { left: 72, right: 170, top: spec.subtitle ? 58 : 44, bottom: 56 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const finite = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xStep = niceStep(Math.max(0, ...finite.map((p) => p.x)));
  const yStep = niceStep(Math.max(0, ...finite.map((p) => p.y)));
  const xMax = Math.max(xStep, Math.ceil(Math.max(0, ...finite.map((p) => p.x)) / xStep) * xStep);
  const yMax = Math.max(yStep, Math.ceil(Math.max(0, ...finite.map((p) => p.y)) / yStep) * yStep);
  const px = (x: number): number => margin.left + (x / xMax) * plotW;
  const py = (y: number): number => margin.top + plotH - (y / yMax) * plotH;
  const r = (v: number): string => v.toFixed(1);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${width / 2}" y="42" text-anchor="middle" font-size="11" fill="#555">${escapeXml(spec.subtitle)}</text>`);
  for (let x = 0; x <= xMax + xStep / 2; x += xStep) {
    out.push(`<line x1="${r(px(x))}" y1="${margin.top}" x2="${r(px(x))}" y2="${margin.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${r(px(x))}" y="${margin.top + plotH + 16}" text-anchor="middle">${tickText(x)}</text>`);
  }
  for (let y = 0; y <= yMax + yStep / 2; y += yStep) {
    out.push(`<line x1="${margin.left}" y1="${r(py(y))}" x2="${margin.left + plotW}" y2="${r(py(y))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${margin.left - 6}" y="${r(py(y) + 4)}" text-anchor="end">${tickText(y)}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text>`);

  spec.series.forEach((series, index) => {
    const points = series.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
    if (points.length > 1) {
      const coords = points.map((p) => `${r(px(p.x))},${r(py(p.y))}`).join(' ');
      out.push(`<polyline points="${coords}" fill="none" stroke="${series.color}" stroke-width="2"${dash}/>`);
    }
    for (const p of points) {
      out.push(`<circle cx="${r(px(p.x))}" cy="${r(py(p.y))}" r="3.5" fill="${series.color}"/>`);
      out.push(`<text x="${r(px(p.x) + 5)}" y="${r(py(p.y) - 6)}" font-size="10" fill="${series.color}">${escapeXml(p.label)}</text>`);
    }
    const legendY = margin.top + 10 + index * 20;
    const legendX = margin.left + plotW + 14;
    out.push(`<line x1="${legendX}" y1="${legendY}" x2="${legendX + 24}" y2="${legendY}" stroke="${series.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${legendX + 30}" y="${legendY + 4}">${escapeXml(series.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

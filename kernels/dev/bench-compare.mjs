// Side by side: bench-engine's table and the transformers baseline's lines (kernels/dev/hf_baseline.py) for one
// preset, with the ratio (prefill: their time / ours; decode: our tok/s / theirs). Rows transformers did not run
// show "-". Usage: node kernels/dev/bench-compare.mjs PRESET ENGINE_OUTPUT [HF_OUTPUT]
import { existsSync, readFileSync } from 'node:fs';

const [preset, enginePath, hfPath] = process.argv.slice(2);
if (!preset || !enginePath) {
  console.error('usage: node kernels/dev/bench-compare.mjs PRESET ENGINE_OUTPUT [HF_OUTPUT]');
  process.exit(2);
}
// "prefill 2048 tok (b1)   28.928   70796.5  latency" | "decode b1 (ctx 128+)   1.359   736.0  bound ..."
const rows = [];
for (const line of readFileSync(enginePath, 'utf8').split('\n')) {
  const m = /^((prefill|decode|mixed) .*?)\s{2,}([0-9.]+)\s+([0-9.]+)\s*(.*)$/.exec(line);
  if (m) rows.push({ what: m[1], kind: m[2], ms: Number(m[3]), tokS: Number(m[4]), note: m[5] });
}
if (rows.length === 0) {
  console.error(`bench-compare: no benchmark rows in ${enginePath}`);
  process.exit(1);
}
// "hf prefill 2048: 1805 ms" | "hf decode b1: 10.5 tok/s (95.7 ms/step)"
const hfPrefillMs = new Map();
const hfDecodeTokS = new Map();
const hfText = hfPath && existsSync(hfPath) ? readFileSync(hfPath, 'utf8') : '';
for (const line of hfText.split('\n')) {
  let m = /^hf prefill (\d+): ([0-9.]+) ms/.exec(line);
  if (m) hfPrefillMs.set(Number(m[1]), Number(m[2]));
  m = /^hf decode b(\d+): ([0-9.]+) tok\/s/.exec(line);
  if (m) hfDecodeTokS.set(Number(m[1]), Number(m[2]));
}
const fmt = (v, unit) => (v >= 1000 ? v.toFixed(0) : v >= 100 && unit !== ' tok/s' ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + unit;
const out = [[`benchmark (${preset})`, 'zamba2-serve', 'transformers', 'ratio', 'note']];
for (const r of rows) {
  let ours;
  let theirs = '-';
  let ratio = '-';
  if (r.kind === 'prefill') {
    ours = fmt(r.ms, ' ms');
    const n = Number(/prefill (\d+)/.exec(r.what)?.[1]);
    const hf = hfPrefillMs.get(n);
    if (hf !== undefined) { theirs = fmt(hf, ' ms'); ratio = fmt(hf / r.ms, 'x'); }
  } else {
    ours = fmt(r.tokS, ' tok/s');
    const b = r.kind === 'decode' ? Number(/decode b(\d+)/.exec(r.what)?.[1]) : NaN;
    const hf = hfDecodeTokS.get(b);
    if (hf !== undefined) { theirs = fmt(hf, ' tok/s'); ratio = fmt(r.tokS / hf, 'x'); }
  }
  out.push([r.what, ours, theirs, ratio, r.note]);
}
const widths = out[0].map((_, i) => Math.max(...out.map((row) => row[i].length)));
for (const row of out) console.log(row.map((c, i) => (i === 0 || i === 4 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd());
if (!hfText) console.log('(transformers baseline not run: python3 with torch and transformers not found, or ZAMBA2_BENCH_HF=0)');

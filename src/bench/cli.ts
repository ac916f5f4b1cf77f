#!/usr/bin/env node
/**
 * `npm run bench -- --workload NAME ...`: the benchmark command. Parses flags (options.ts), runs
 * the workload (run-bench.ts), prints the table to stdout and progress to stderr, and writes the
 * JSON result (and the rate sweep's SVG plot). Exit 0 when the run completed — failed requests are
 * measurements, shown in the errors row — 1 when it could not run, 2 on bad flags.
 *
 * Module map of src/bench/: options (flags) → workloads (defaults, phases) → run-bench (orchestration)
 * → drive (concurrency, arrival times) → sse-client (token timings) / http-load (autocannon) →
 * stats (percentiles) → report-table, svg-plot. server-process starts and stops servers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseBenchArgs, UsageError, USAGE } from './options.js';
import { runBench } from './run-bench.js';
import { stopAllServers } from './server-process.js';

// Interrupted (Ctrl-C, a CI timeout): stop the servers we started before going, so none is left running.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping started servers\n`);
    void stopAllServers().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (options === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = (line: string): void => {
    process.stderr.write(`[bench] ${line}\n`);
  };
  const { result, plotSvg } = await runBench(options, argv, log);
  mkdirSync(dirname(options.outPath), { recursive: true });
  writeFileSync(options.outPath, `${JSON.stringify(result, null, 2)}\n`);
  if (plotSvg !== null && options.svgPath !== null) {
    mkdirSync(dirname(options.svgPath), { recursive: true });
    writeFileSync(options.svgPath, plotSvg);
  }
  process.stdout.write(`\n${options.workload} on ${result.server.model} (${result.server.baseUrl}${result.baseline ? `; baseline ${result.baseline.name}: ${result.baseline.model}` : ''})\n\n`);
  process.stdout.write(`${result.table}\n\n`);
  const env = result.environment;
  process.stdout.write(`${env.cpuCount} × ${env.cpuModel}, node ${env.node}, load average ${env.loadAverage1mStart.toFixed(1)} → ${env.loadAverage1mEnd.toFixed(1)}\n`);
  log(`wrote ${options.outPath}${options.svgPath !== null && plotSvg !== null ? ` and ${options.svgPath}` : ''}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);

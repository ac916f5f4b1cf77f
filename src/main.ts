#!/usr/bin/env node
/**
 * zamba2-serve: the executable. `node dist/main.js [serve] [--flags]`, `npm start`, or the
 * `zamba2-serve` bin. See src/cli/ for the commands and src/cli/serve.ts for start-up.
 */
import { runCli } from './cli/index.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`zamba2-serve: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);

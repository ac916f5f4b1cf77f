#!/usr/bin/env node
// Runs the node:test suites. Test files are TypeScript (`*.test.ts`) under test/, loaded through tsx.
//   node test/run-tests.mjs            the CPU suite (what CI and `npm test` run)
//   node test/run-tests.mjs --gpu      the GPU suite (test/gpu/, needs the CUDA addon and a GPU)
//   node test/run-tests.mjs FILE...    just these files
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const gpu = args.includes('--gpu');
const explicit = args.filter((a) => !a.startsWith('--'));

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = explicit.length > 0
  ? explicit
  : findTests('test').filter((f) => (gpu ? f.startsWith(join('test', 'gpu')) : !f.startsWith(join('test', 'gpu')))).sort();
if (files.length === 0) { console.error('no test files found'); process.exit(1); }
const concurrency = gpu ? '1' : String(Math.max(1, Number(process.env.TEST_CONCURRENCY ?? 2)));
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);

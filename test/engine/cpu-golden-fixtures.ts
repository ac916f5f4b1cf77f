// Reads test/golden/fixtures/<name>/golden.json (format zamba2-golden/1) and its float32 logits files.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES_DIR = fileURLToPath(new URL('../golden/fixtures/', import.meta.url));

export interface GoldenCase {
  name: string;
  promptTokens: number[];
  /** Prompt positions whose logits rows are stored, in `logits` order. */
  logitPositions: number[];
  /** [logitPositions.length × V] */
  logits: Float32Array;
  /** Greedy continuation after the prompt (may be empty). */
  greedyTokens: number[];
}

export interface GoldenFixture {
  name: string;
  checkpointDir: string;
  vocabSize: number;
  cases: GoldenCase[];
}

export function listGoldenFixtures(): string[] {
  return readdirSync(FIXTURES_DIR)
    .filter((n) => existsSync(join(FIXTURES_DIR, n, 'golden.json')))
    .sort();
}

export function loadGoldenFixture(name: string): GoldenFixture {
  const dir = join(FIXTURES_DIR, name);
  const g = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as {
    format: string;
    checkpoint: string;
    dims: { vocabSize: number };
    cases: Array<Omit<GoldenCase, 'logits'> & { logitsFile: string }>;
  };
  if (g.format !== 'zamba2-golden/1') throw new Error(`${dir}: unknown golden format ${g.format}`);
  return {
    name,
    checkpointDir: resolve(dir, g.checkpoint),
    vocabSize: g.dims.vocabSize,
    cases: g.cases.map((c) => {
      const buf = readFileSync(join(dir, c.logitsFile));
      return {
        name: c.name,
        promptTokens: c.promptTokens,
        logitPositions: c.logitPositions,
        logits: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
        greedyTokens: c.greedyTokens,
      };
    }),
  };
}

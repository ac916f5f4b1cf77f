/**
 * Reader of the golden fixtures in test/golden/fixtures/<name>/ (format: test/golden/README.md) and
 * the comparator engines' golden tests use. Who calls: engine tests (CPU and CUDA), checkpoint
 * tests, test/unit/golden/. Nothing here mutates a fixture.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GOLDEN_FORMAT = 'zamba2-golden/1';

/** Folder holding one sub-folder per fixture. */
export const GOLDEN_FIXTURES_DIR = fileURLToPath(new URL('../golden/fixtures/', import.meta.url));

/** Where the float64 reference was compared with transformers, one comparison mode per entry. */
export interface GoldenCheck {
  case: string;
  mode: string;
  maxAbsError: number;
  maxRelError: number;
  worstPosition: number | null;
  positionsCompared: number;
  greedyTokensEqual?: boolean;
}

export interface GoldenCrossCheck {
  status: string;
  reference?: string;
  against?: string;
  relErrorDefinition?: string;
  maxAbsError?: number;
  maxRelError?: number;
  greedyTokensEqual?: boolean;
  goldensReproducedOnCheck?: boolean;
  checks?: GoldenCheck[];
  /** The same comparison against transformers with its float32 internals left as shipped. */
  asShipped?: Omit<GoldenCrossCheck, 'asShipped'>;
  /** How far transformers' default dt floor moves the len100 logits (proves the floor is off). */
  dtFloorOnMaxRelError_len100?: number;
}

export interface GoldenCaseJson {
  name: string;
  promptTokens: number[];
  logitPositions: number[];
  logitsFile: string;
  greedyTokens: number[];
  greedyTop2Margins: number[];
}

export interface GoldenJson {
  format: string;
  fixture: string;
  description: string;
  /** Checkpoint folder, relative to the fixture folder ('.' or '../../../../models'). */
  checkpoint: string;
  dims: Record<string, unknown> & { vocabSize: number; hiddenSize: number; numLayers: number };
  generator: Record<string, unknown>;
  crossCheck: GoldenCrossCheck;
  cases: GoldenCaseJson[];
}

export interface GoldenCase {
  name: string;
  promptTokens: Int32Array;
  /** Prompt positions whose next-token logits are stored, ascending. */
  logitPositions: number[];
  /** float32 [logitPositions.length × vocabSize], row i = logits after prompt token logitPositions[i]. */
  logits: Float32Array;
  /** Greedy continuation from the whole prompt (may be empty). */
  greedyTokens: Int32Array;
  /** top1 − top2 logit at each greedy step: small margins mean a near-tie an engine may break differently. */
  greedyTop2Margins: Float64Array;
}

export interface GoldenFixture {
  name: string;
  /** Fixture folder (golden.json, logits files). */
  dir: string;
  /** Absolute path of the checkpoint folder (config.json, model.safetensors, ...). */
  checkpointDir: string;
  vocabSize: number;
  json: GoldenJson;
  cases: GoldenCase[];
  /** Row `pos` of a case's logits (throws when that position is not stored). */
  logitsAt(caseName: string, position: number): Float32Array;
}

/** Names of every fixture folder that holds a golden.json, sorted. */
export function listGoldenFixtures(dir: string = GOLDEN_FIXTURES_DIR): string[] {
  return readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isDirectory() && existsSync(join(dir, n, 'golden.json')))
    .sort();
}

/** Loads one fixture; throws with the file and the problem when it is malformed. */
export function loadGoldenFixture(name: string, dir: string = GOLDEN_FIXTURES_DIR): GoldenFixture {
  const fixtureDir = join(dir, name);
  const jsonPath = join(fixtureDir, 'golden.json');
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as GoldenJson;
  if (json.format !== GOLDEN_FORMAT) throw new Error(`${jsonPath}: format ${json.format}, expected ${GOLDEN_FORMAT}`);
  const vocabSize = json.dims.vocabSize;
  const cases = json.cases.map((c): GoldenCase => {
    const file = join(fixtureDir, c.logitsFile);
    const buf = readFileSync(file);
    const expectedBytes = c.logitPositions.length * vocabSize * 4;
    if (buf.byteLength !== expectedBytes) {
      throw new Error(`${file}: ${buf.byteLength} bytes, expected ${c.logitPositions.length} positions × ${vocabSize} × 4 = ${expectedBytes}`);
    }
    // Copy into an aligned little-endian float32 array (Buffer slices may be unaligned).
    const logits = new Float32Array(c.logitPositions.length * vocabSize);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let i = 0; i < logits.length; i++) logits[i] = view.getFloat32(i * 4, true);
    if (c.greedyTop2Margins.length !== c.greedyTokens.length) {
      throw new Error(`${jsonPath}: case ${c.name} has ${c.greedyTokens.length} greedy tokens but ${c.greedyTop2Margins.length} margins`);
    }
    return {
      name: c.name,
      promptTokens: Int32Array.from(c.promptTokens),
      logitPositions: [...c.logitPositions],
      logits,
      greedyTokens: Int32Array.from(c.greedyTokens),
      greedyTop2Margins: Float64Array.from(c.greedyTop2Margins),
    };
  });
  return {
    name,
    dir: fixtureDir,
    checkpointDir: resolve(fixtureDir, json.checkpoint),
    vocabSize,
    json,
    cases,
    logitsAt(caseName: string, position: number): Float32Array {
      const c = cases.find((x) => x.name === caseName);
      if (!c) throw new Error(`fixture ${name} has no case ${caseName}`);
      const row = c.logitPositions.indexOf(position);
      if (row < 0) throw new Error(`fixture ${name} case ${caseName} stores no logits for position ${position} (has ${c.logitPositions.join(', ')})`);
      return c.logits.subarray(row * vocabSize, (row + 1) * vocabSize);
    },
  };
}

export interface LogitsComparison {
  maxAbsError: number;
  /** max over rows of (max |actual − expected| in the row) / (max |expected| in the row). */
  maxRelError: number;
  /** Row (0-based) with the largest relative error, and the vocab index of its largest abs error. */
  worstRow: number;
  worstIndex: number;
  rows: number;
}

/** Error statistics of `actual` against `expected`, both [rows × vocabSize] row-major. */
export function compareLogits(actual: ArrayLike<number>, expected: ArrayLike<number>, vocabSize: number): LogitsComparison {
  if (actual.length !== expected.length) throw new Error(`logits length ${actual.length} != expected ${expected.length}`);
  if (vocabSize <= 0 || expected.length % vocabSize !== 0) throw new Error(`logits length ${expected.length} is not a multiple of vocab ${vocabSize}`);
  const rows = expected.length / vocabSize;
  const out: LogitsComparison = { maxAbsError: 0, maxRelError: 0, worstRow: 0, worstIndex: 0, rows };
  for (let r = 0; r < rows; r++) {
    let rowAbs = 0;
    let rowIdx = 0;
    let rowScale = 0;
    for (let i = r * vocabSize; i < (r + 1) * vocabSize; i++) {
      const e = expected[i]!;
      const a = actual[i]!;
      const err = Number.isNaN(a) || Number.isNaN(e) ? Infinity : Math.abs(a - e);
      if (err > rowAbs) {
        rowAbs = err;
        rowIdx = i - r * vocabSize;
      }
      rowScale = Math.max(rowScale, Math.abs(e));
    }
    const rel = rowAbs / Math.max(rowScale, 1e-30);
    out.maxAbsError = Math.max(out.maxAbsError, rowAbs);
    if (rel > out.maxRelError) {
      out.maxRelError = rel;
      out.worstRow = r;
      out.worstIndex = rowIdx;
    }
  }
  return out;
}

export interface AssertLogitsOptions {
  /** Bound on compareLogits().maxRelError. */
  maxRelError: number;
  vocabSize?: number;
  /** Label for messages, e.g. 'fixture a, case len300'. */
  label?: string;
  /** Position label of each row (e.g. GoldenCase.logitPositions) for the message. */
  positions?: readonly number[];
}

/**
 * Throws an AssertionError naming the max abs/rel error and the worst position and vocab index
 * when the relative error exceeds the bound; returns the comparison otherwise (so tests can log it).
 */
export function assertLogitsClose(actual: ArrayLike<number>, expected: ArrayLike<number>, options: AssertLogitsOptions): LogitsComparison {
  const vocab = options.vocabSize ?? expected.length;
  const cmp = compareLogits(actual, expected, vocab);
  if (!(cmp.maxRelError <= options.maxRelError)) {
    const pos = options.positions?.[cmp.worstRow] ?? cmp.worstRow;
    const i = cmp.worstRow * vocab + cmp.worstIndex;
    const err = new Error(
      `${options.label ?? 'logits'}: max rel error ${cmp.maxRelError.toExponential(3)} > ${options.maxRelError.toExponential(3)} ` +
        `(max abs ${cmp.maxAbsError.toExponential(3)}; worst at position ${pos}, token ${cmp.worstIndex}: ` +
        `actual ${actual[i]} vs expected ${expected[i]}; ${cmp.rows} rows compared)`,
    );
    err.name = 'AssertionError';
    throw err;
  }
  return cmp;
}

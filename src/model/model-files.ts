/**
 * The non-weight files of a checkpoint folder: config.json (required), generation_config.json,
 * tokenizer.json, tokenizer_config.json, special_tokens_map.json (optional). Read by loadCheckpoint
 * and by the tokenizer/serving layers for eos ids and template files.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError } from './weights.js';

export interface GenerationDefaults {
  bosTokenId: number | null;
  /** generation_config.json eos_token_id, always as a list (it may be an int or a list there). */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** Other fields (temperature, top_p, max_length, …) as stored. */
  raw: Record<string, unknown>;
}

export interface ModelFiles {
  dir: string;
  configPath: string;
  /** config.json as parsed JSON. */
  config: Record<string, unknown>;
  generation: GenerationDefaults | null;
  tokenizerJsonPath: string | null;
  tokenizerConfigPath: string | null;
  specialTokensMapPath: string | null;
}

function readJson(path: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CheckpointError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `invalid JSON (${(err as Error).message.split('\n')[0]})`}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(`${path}: expected a JSON object`);
  return json as Record<string, unknown>;
}

function optionalPath(dir: string, name: string): string | null {
  const p = join(dir, name);
  return existsSync(p) ? p : null;
}

function tokenIdOrNull(v: unknown, path: string, field: string): number | null {
  if (v === undefined || v === null) return null;
  if (Number.isInteger(v) && (v as number) >= 0) return v as number;
  throw new CheckpointError(`${path}: field "${field}": expected a token id, got ${JSON.stringify(v)}`);
}

export function readGenerationConfig(path: string): GenerationDefaults {
  const raw = readJson(path);
  const eos = raw['eos_token_id'];
  const eosList = Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos];
  return {
    bosTokenId: tokenIdOrNull(raw['bos_token_id'], path, 'bos_token_id'),
    eosTokenIds: eosList.map((e, i) => tokenIdOrNull(e, path, `eos_token_id.${i}`)!),
    padTokenId: tokenIdOrNull(raw['pad_token_id'], path, 'pad_token_id'),
    raw,
  };
}

/** Reads the checkpoint folder's small files (no weights). Throws one line when config.json is missing or bad. */
export function readModelFiles(dir: string): ModelFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: not a folder`);
  const configPath = join(dir, 'config.json');
  const generationPath = optionalPath(dir, 'generation_config.json');
  return {
    dir,
    configPath,
    config: readJson(configPath),
    generation: generationPath ? readGenerationConfig(generationPath) : null,
    tokenizerJsonPath: optionalPath(dir, 'tokenizer.json'),
    tokenizerConfigPath: optionalPath(dir, 'tokenizer_config.json'),
    specialTokensMapPath: optionalPath(dir, 'special_tokens_map.json'),
  };
}

/**
 * Built-in model presets: config/models/<name>.json, each a config.json in the transformers 4.x hub
 * format with a released Zamba2's real dimensions (spec §1.2). Used by make-checkpoint, the presets
 * command and benchmarks that need full-size dims without weights.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseZamba2ConfigText, type ParsedZamba2Config } from './zamba2-config.js';

/** config/models/ of the package: ../../config/models from both src/model/ and dist/model/. */
export const PRESETS_DIR = fileURLToPath(new URL('../../config/models/', import.meta.url));

export interface ModelPreset extends ParsedZamba2Config {
  name: string;
  /** The preset file's JSON, as a config.json. */
  configJson: Record<string, unknown>;
}

export function listPresetNames(): string[] {
  return readdirSync(PRESETS_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

export function loadPreset(name: string): ModelPreset {
  const names = listPresetNames();
  if (!names.includes(name)) throw new Error(`unknown preset "${name}" (known: ${names.join(', ')})`);
  const path = join(PRESETS_DIR, `${name}.json`);
  const text = readFileSync(path, 'utf8');
  const parsed = parseZamba2ConfigText(text, { source: path });
  return { ...parsed, name, configJson: JSON.parse(text) as Record<string, unknown> };
}

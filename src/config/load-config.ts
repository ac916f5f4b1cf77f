/**
 * Merges the option sources, lowest precedence first:
 *   config/default.json < --config FILE (JSON or YAML) < ZAMBA2_* env vars < CLI flags
 * and validates the result with the one schema. Errors name the option and where its value came
 * from, so `--max-num-seqs abc` and `ZAMBA2_MAX_NUM_SEQS=abc` both say which knob is wrong.
 *
 * Called once by src/main.ts (and by tests); pure apart from reading the two files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { readApiKeyFile } from './api-key-file.js';
import {
  CONFIG_KEYS,
  OPTION_KINDS,
  envName,
  flagName,
  serverConfigSchema,
  type ServerConfig,
  type ServerConfigKey,
} from './schema.js';

/** Thrown for any bad option; main prints `message` and exits 1 (no stack trace). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The repository / package root (src/config/ and dist/config/ are both two levels below it). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_CONFIG_FILE = resolve(PACKAGE_ROOT, 'config', 'default.json');

type Source = 'default' | 'file' | 'env' | 'cli';
type RawOptions = Partial<Record<ServerConfigKey, unknown>>;

export interface LoadConfigInput {
  /** Values from CLI flags, still as strings (or string lists / booleans), keyed by option. */
  cli?: Partial<Record<ServerConfigKey, string | string[] | boolean>>;
  /** Usually process.env. */
  env?: Record<string, string | undefined>;
  /** --config FILE. */
  configFile?: string | null;
  /** Defaults file; tests may point elsewhere. */
  defaultsFile?: string;
}

function describeSource(key: ServerConfigKey, source: Source, configFile: string | null | undefined): string {
  switch (source) {
    case 'cli':
      return `--${flagName(key)}`;
    case 'env':
      return `${envName(key)}`;
    case 'file':
      return `"${key}" in ${configFile}`;
    default:
      return `"${key}" in config/default.json`;
  }
}

/** Accepts camelCase, kebab-case and snake_case keys in files ("max-num-seqs", "max_num_seqs"). */
function normalizeKey(key: string): string {
  return key.replace(/[-_]([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function readOptionsFile(path: string, what: string): RawOptions {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`cannot parse ${what} ${path}: ${(err as Error).message}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`${what} ${path} must hold an object of options`);
  const out: RawOptions = {};
  for (const [rawKey, value] of Object.entries(data)) {
    const key = normalizeKey(rawKey);
    if (!(CONFIG_KEYS as string[]).includes(key)) {
      throw new ConfigError(`unknown option "${rawKey}" in ${what} ${path} (known: ${CONFIG_KEYS.join(', ')})`);
    }
    out[key as ServerConfigKey] = value;
  }
  return out;
}

/** Converts a string from an env var or flag to the option's type; throws ConfigError naming `where`. */
export function parseOptionString(key: ServerConfigKey, raw: string | string[] | boolean, where: string): unknown {
  const kind = OPTION_KINDS[key];
  if (kind === 'list') {
    const parts = Array.isArray(raw) ? raw : String(raw).split(',');
    return parts.map((s) => s.trim()).filter((s) => s.length > 0);
  }
  if (Array.isArray(raw)) raw = raw[raw.length - 1] ?? '';
  if (kind === 'trust-proxy') return parseTrustProxy(String(raw));
  if (kind === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    const s = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
    throw new ConfigError(`invalid value for ${where}: expected true or false, got "${raw}"`);
  }
  const s = String(raw).trim();
  if (kind === 'nullable-string' || kind === 'nullable-int') {
    if (s === '' || s === 'null' || s === 'auto') return null;
  }
  if (kind === 'int' || kind === 'nullable-int' || kind === 'number') {
    const n = s === '' ? Number.NaN : Number(s);
    if (!Number.isFinite(n)) throw new ConfigError(`invalid value for ${where}: expected a number, got "${raw}"`);
    return n;
  }
  return s;
}

/** --trust-proxy / ZAMBA2_TRUST_PROXY: true | false | a comma list of addresses, CIDRs and range names. */
function parseTrustProxy(raw: string): unknown {
  const s = raw.trim();
  const lower = s.toLowerCase();
  if (['true', 'yes', 'on'].includes(lower)) return true;
  if (['false', 'no', 'off', ''].includes(lower)) return false;
  return s
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/** Zod issues → one line per problem, each naming the option and its source. */
function formatIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  sources: Partial<Record<ServerConfigKey, Source>>,
  configFile: string | null | undefined,
): string {
  return issues
    .map((issue) => {
      const key = issue.path[0];
      if (typeof key === 'string' && (CONFIG_KEYS as string[]).includes(key)) {
        const k = key as ServerConfigKey;
        const src = sources[k];
        const where = src ? describeSource(k, src, configFile) : `"${k}"`;
        return `invalid option ${k} (${where}): ${issue.message}`;
      }
      return `invalid configuration: ${issue.message}`;
    })
    .join('\n');
}

export function loadConfig(input: LoadConfigInput = {}): ServerConfig {
  const defaultsFile = input.defaultsFile ?? DEFAULT_CONFIG_FILE;
  const merged: RawOptions = {};
  const sources: Partial<Record<ServerConfigKey, Source>> = {};
  const apply = (values: RawOptions, source: Source): void => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) continue;
      merged[k as ServerConfigKey] = v;
      sources[k as ServerConfigKey] = source;
    }
  };

  const defaults = readOptionsFile(defaultsFile, 'defaults file');
  // A relative model path in the defaults file means "relative to the package" (the bundled
  // ./models), so `npm start` works from any working directory.
  if (typeof defaults.model === 'string' && defaults.model.startsWith('.')) {
    defaults.model = resolve(dirname(defaultsFile), '..', defaults.model);
  }
  apply(defaults, 'default');
  if (input.configFile) apply(readOptionsFile(input.configFile, 'config file'), 'file');

  const env = input.env ?? {};
  const fromEnv: RawOptions = {};
  for (const key of CONFIG_KEYS) {
    const value = env[envName(key)];
    if (value !== undefined) fromEnv[key] = parseOptionString(key, value, envName(key));
  }
  // ZAMBA2_API_KEYS (plural) is accepted too: its keys join ZAMBA2_API_KEY's.
  const pluralKeys = env.ZAMBA2_API_KEYS;
  if (pluralKeys !== undefined) {
    fromEnv.apiKey = [...((fromEnv.apiKey as string[] | undefined) ?? []), ...(parseOptionString('apiKey', pluralKeys, 'ZAMBA2_API_KEYS') as string[])];
  }
  apply(fromEnv, 'env');

  const fromCli: RawOptions = {};
  for (const [k, v] of Object.entries(input.cli ?? {})) {
    const key = k as ServerConfigKey;
    if (v !== undefined) fromCli[key] = parseOptionString(key, v, `--${flagName(key)}`);
  }
  apply(fromCli, 'cli');

  // A single key from a file may be written as a plain string.
  for (const key of ['apiKey', 'corsOrigins'] as const) {
    if (typeof merged[key] === 'string') merged[key] = [merged[key]];
  }

  const parsed = serverConfigSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, sources, input.configFile));
  const config = parsed.data;
  if (config.apiKeyFile !== null) {
    try {
      config.apiKey = [...new Set([...config.apiKey, ...readApiKeyFile(config.apiKeyFile)])];
    } catch (err) {
      throw new ConfigError(`invalid option apiKeyFile (${describeSource('apiKeyFile', sources.apiKeyFile ?? 'default', input.configFile)}): ${(err as Error).message}`);
    }
  }
  // Relative model paths from the user are relative to the working directory, as with any CLI.
  if (sources.model !== 'default' && (config.model.startsWith('.') || existsSync(config.model))) {
    config.model = resolve(config.model);
  }
  return config;
}

/** The id of the bundled demo model (its folder is just "models"). */
export const DEMO_MODEL_ID = 'zamba2-demo';

/**
 * The id /v1/models lists: --served-model-name; else a hub id as given (as vLLM does); else the
 * checkpoint folder's name ("zamba2-demo" for the bundled ./models).
 */
export function servedModelId(config: Pick<ServerConfig, 'model' | 'servedModelName'>): string {
  if (config.servedModelName) return config.servedModelName;
  if (resolve(config.model) === resolve(PACKAGE_ROOT, 'models')) return DEMO_MODEL_ID;
  if (!isAbsolute(config.model)) return config.model;
  const trimmed = config.model.replace(/[\\/]+$/, '');
  const parts = trimmed.split(/[\\/]/);
  return parts[parts.length - 1] || trimmed;
}

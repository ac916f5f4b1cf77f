/**
 * `zamba2-serve [serve] [MODEL] [--flags]` → option overrides for loadConfig. Every option of the
 * config schema is a kebab-case flag (--max-num-seqs); --api-key and --cors-origins may repeat.
 */
import { parseArgs } from 'node:util';
import { CONFIG_KEYS, OPTION_KINDS, envName, flagName, type ServerConfigKey } from '../config/schema.js';

export interface ServeArgs {
  cli: Partial<Record<ServerConfigKey, string | string[] | boolean>>;
  configFile: string | null;
  help: boolean;
  version: boolean;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

type ParseArgsOption = { type: 'string' | 'boolean'; multiple?: boolean; short?: string };

function optionSpec(): Record<string, ParseArgsOption> {
  const spec: Record<string, ParseArgsOption> = {
    config: { type: 'string', short: 'c' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const key of CONFIG_KEYS) {
    const kind = OPTION_KINDS[key];
    spec[flagName(key)] = kind === 'boolean' ? { type: 'boolean' } : kind === 'list' ? { type: 'string', multiple: true } : { type: 'string' };
  }
  return spec;
}

export function parseServeArgs(argv: readonly string[]): ServeArgs {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: optionSpec(), allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const cli: ServeArgs['cli'] = {};
  for (const key of CONFIG_KEYS) {
    const value = values[flagName(key)];
    if (value !== undefined) cli[key] = value as string | string[] | boolean;
  }
  if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  // `zamba2-serve serve MODEL` (vLLM style) is the same as --model MODEL.
  if (positionals.length === 1) {
    if (cli.model !== undefined) throw new UsageError('give the model either as an argument or with --model, not both');
    cli.model = positionals[0]!;
  }
  return {
    cli,
    configFile: typeof values.config === 'string' ? values.config : null,
    help: values.help === true,
    version: values.version === true,
  };
}

const DESCRIPTIONS: Record<ServerConfigKey, string> = {
  model: 'checkpoint folder or hub id (default: the bundled ./models demo model)',
  servedModelName: 'model id shown to clients (default: folder name or hub id)',
  device: 'cpu | cuda | fake (default cpu)',
  host: 'address to listen on (default 0.0.0.0)',
  port: 'port to listen on (default 8000; 0 = any free port)',
  maxNumSeqs: 'most sequences running at once',
  maxNumBatchedTokens: 'token budget of one engine step',
  maxModelLen: 'longest prompt + output (default: the model’s limit)',
  maxWaiting: 'requests allowed to wait; more get 429',
  cacheFraction: 'fraction of the engine cache budget to use (0..1]',
  apiKey: 'require this Bearer key on /v1/* (repeatable or comma list; also ZAMBA2_API_KEYS)',
  apiKeyFile: 'file of API keys, one per line (added to --api-key)',
  rateLimitPerMinute: 'requests per minute per API key (per client IP without keys); 0 = off',
  logLevel: 'fatal | error | warn | info | debug | trace | silent',
  logRequests: 'log request lines and prompt/completion text (off by default)',
  bodyLimitBytes: 'largest accepted request body',
  shutdownGraceSeconds: 'on SIGTERM/SIGINT, let running requests finish this long',
  seed: 'engine RNG seed',
  fakeStepLatencyMs: 'fake engine: wall time of one step',
  downloadDir: 'hub download cache (default: the Hugging Face cache)',
  corsOrigins: 'allowed CORS origins, * for any (repeatable; default: CORS off)',
  trustProxy: 'proxies allowed to set X-Forwarded-For: false (default) | true (any peer) | comma list of proxy IPs/CIDRs',
  dataParallel: 'engine replicas on this host, one per GPU with cuda (default 1)',
  tokenizerWorkers: 'threads that tokenize long prompts off the event loop (default min(2, cores-1); 0 = inline)',
  tokenizerWorkerMinChars: 'prompts at least this long (characters) are tokenized in a worker (default 1024)',
};

export function serveUsage(): string {
  const rows = CONFIG_KEYS.map((key) => {
    const kind = OPTION_KINDS[key];
    const flag = `--${flagName(key)}${kind === 'boolean' ? '' : ' V'}`;
    return `  ${flag.padEnd(30)} ${DESCRIPTIONS[key]}  [${envName(key)}]`;
  });
  return [
    'usage: zamba2-serve [serve] [MODEL] [options]',
    '       zamba2-serve make-checkpoint --preset NAME --out DIR [--seed N] [--dtype bf16|f16|fp32]',
    '       zamba2-serve presets [--json]',
    '',
    'Serves an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) for a Zamba2 model.',
    '',
    'options (each also settable in a --config file and as the env var in brackets; flags win):',
    `  ${'-c, --config FILE'.padEnd(30)} JSON or YAML file of options (camelCase or kebab-case keys)`,
    ...rows,
    `  ${'-h, --help'.padEnd(30)} this help`,
    `  ${'-v, --version'.padEnd(30)} print the version`,
  ].join('\n');
}

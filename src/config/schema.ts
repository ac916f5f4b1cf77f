/**
 * The one schema of every server option. Every source (config/default.json, a --config file,
 * ZAMBA2_* env vars, CLI flags) is merged into one object and validated here, so a bad value stops
 * start-up with a message that names the option, whatever source it came from.
 *
 * Who reads it: src/main.ts (start-up), src/engine/index.ts (which engine), src/app.ts (HTTP).
 */
import { isIP } from 'node:net';
import { z } from 'zod';

const positiveInt = z.number().int().positive();

/** proxy-addr's names for address ranges (what Fastify's trustProxy list accepts besides addresses and CIDRs). */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/** An IP address, an IP/prefix (CIDR, or IPv4/netmask) or a proxy-addr range name. */
export function isTrustedProxyEntry(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true;
  const [address, prefix, ...rest] = entry.split('/');
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (/^\d+$/.test(prefix)) return Number(prefix) <= (family === 4 ? 32 : 128);
  return family === 4 && isIP(prefix) === 4;
}

/**
 * Which peers may set X-Forwarded-For (Fastify's trustProxy): false = none (the socket address is
 * the client), true = every hop (the left-most X-Forwarded-For entry, which any client can write),
 * or a list of proxy addresses / CIDRs / range names (the client is the right-most address that is
 * not a trusted proxy). No hop count: Fastify 5.12 treats a number as "trust nothing", since a
 * count cannot tell a proxy from a client that wrote extra hops itself.
 */
const trustedProxyList = z
  .array(z.string().min(1))
  .min(1)
  .refine((list) => list.every(isTrustedProxyEntry), {
    message:
      'each entry must be an IP address, a CIDR (10.0.0.0/8) or one of loopback, linklocal, uniquelocal (hop counts are not supported: list the proxies)',
  });

export const trustProxySchema = z.union([
  z.boolean(),
  trustedProxyList,
  // A config file may give the list as one comma-separated string, as Fastify accepts it.
  z
    .string()
    .transform((s) => s.split(',').map((part) => part.trim()).filter((part) => part.length > 0))
    .pipe(trustedProxyList),
]);

export type TrustProxy = z.infer<typeof trustProxySchema>;

export const serverConfigSchema = z
  .object({
    /** Local Hugging Face checkpoint folder or a hub id ("Zyphra/Zamba2-1.2B-instruct"). */
    model: z.string().min(1),
    /** Model id clients send and /v1/models lists; default: the folder or hub id's last part. */
    servedModelName: z.string().min(1).nullable(),
    device: z.enum(['cpu', 'cuda', 'fake']),
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    /** Most sequences running at once. */
    maxNumSeqs: positiveInt,
    /** Token budget of one engine step (decodes + prefill chunks). */
    maxNumBatchedTokens: positiveInt,
    /** Longest prompt + output; null = the model's own limit. */
    maxModelLen: positiveInt.nullable(),
    /** Requests allowed to wait for admission; more get 429 with Retry-After. */
    maxWaiting: z.number().int().min(0),
    /** Fraction of the engine's cache budget given to state slots + KV pages. */
    cacheFraction: z.number().gt(0).max(1),
    /** Bearer keys accepted on /v1/*; empty = no auth. */
    apiKey: z.array(z.string().min(1)),
    /** File of more API keys, one per line (added to apiKey by loadConfig). */
    apiKeyFile: z.string().min(1).nullable(),
    /** Requests per minute per API key (per client address when auth is off); 0 = no limit. */
    rateLimitPerMinute: z.number().int().min(0),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** Log prompt and completion text (off by default: prompts are user data). */
    logRequests: z.boolean(),
    /** Largest accepted request body. */
    bodyLimitBytes: positiveInt,
    /** Seconds to let running requests finish on SIGTERM/SIGINT before aborting them. */
    shutdownGraceSeconds: z.number().min(0),
    /** Engine RNG seed (requests without their own seed). */
    seed: z.number().int().min(0),
    /** Fake engine only: wall time of one step. */
    fakeStepLatencyMs: z.number().min(0),
    /** Where hub downloads are cached; null = the model loader's default. */
    downloadDir: z.string().min(1).nullable(),
    /** Proxies trusted to set X-Forwarded-For; the client address (rate-limit bucket, logs) follows from it. */
    trustProxy: trustProxySchema,
    /** Allowed CORS origins; empty = CORS off. */
    corsOrigins: z.array(z.string().min(1)),
    /** Engine replicas on this host (one per GPU with cuda), requests routed to the least loaded. */
    dataParallel: positiveInt,
    /** Worker threads that tokenize long prompts off the event loop; null = min(2, cores − 1); 0 = all inline. */
    tokenizerWorkers: z.number().int().min(0).max(64).nullable(),
    /** Prompts of at least this many characters are tokenized in a worker (shorter ones inline: cheaper than the round trip). */
    tokenizerWorkerMinChars: z.number().int().min(0),
  })
  .strict();

export type ServerConfig = z.infer<typeof serverConfigSchema>;
export type ServerConfigKey = keyof ServerConfig;

export const CONFIG_KEYS = Object.keys(serverConfigSchema.shape) as ServerConfigKey[];

/** How a string from an env var or CLI flag becomes the option's type. */
export type OptionKind = 'string' | 'nullable-string' | 'int' | 'nullable-int' | 'number' | 'boolean' | 'list' | 'enum' | 'trust-proxy';

export const OPTION_KINDS: Record<ServerConfigKey, OptionKind> = {
  model: 'string',
  servedModelName: 'nullable-string',
  device: 'enum',
  host: 'string',
  port: 'int',
  maxNumSeqs: 'int',
  maxNumBatchedTokens: 'int',
  maxModelLen: 'nullable-int',
  maxWaiting: 'int',
  cacheFraction: 'number',
  apiKey: 'list',
  apiKeyFile: 'nullable-string',
  rateLimitPerMinute: 'int',
  logLevel: 'enum',
  logRequests: 'boolean',
  bodyLimitBytes: 'int',
  shutdownGraceSeconds: 'number',
  seed: 'int',
  fakeStepLatencyMs: 'number',
  downloadDir: 'nullable-string',
  corsOrigins: 'list',
  trustProxy: 'trust-proxy',
  dataParallel: 'int',
  tokenizerWorkers: 'nullable-int',
  tokenizerWorkerMinChars: 'int',
};

/** camelCase option → kebab-case CLI flag ("maxNumSeqs" → "max-num-seqs"). */
export function flagName(key: ServerConfigKey): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** camelCase option → env var ("maxNumSeqs" → "ZAMBA2_MAX_NUM_SEQS"). */
export function envName(key: ServerConfigKey): string {
  return `ZAMBA2_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

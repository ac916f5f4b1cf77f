/**
 * --api-key-file FILE: API keys one per line (blank lines and `#` comments skipped), so keys can
 * come from a mounted secret instead of the command line, where `ps` would show them. Read once at
 * start-up by loadConfig, which adds these keys to the --api-key / ZAMBA2_API_KEY(S) ones.
 */
import { readFileSync } from 'node:fs';

/** Throws an Error naming the file when it cannot be read or holds no key. */
export function readApiKeyFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the API key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  if (keys.length === 0) throw new Error(`the API key file ${path} holds no key (one key per line)`);
  return keys;
}

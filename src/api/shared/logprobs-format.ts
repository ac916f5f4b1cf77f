/** serving's TokenLogprobInfo → the two OpenAI logprobs shapes (chat and legacy completions). */
import type { TokenLogprobInfo } from '../../serving/index.js';

/** OpenAI sends -9999.0 for -inf (JSON has no infinity). */
const finiteLogprob = (lp: number): number => (Number.isFinite(lp) ? lp : -9999);

export interface ChatLogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobEntry(info: TokenLogprobInfo): ChatLogprobEntry {
  return {
    token: info.text,
    logprob: finiteLogprob(info.logprob),
    bytes: info.bytes,
    top_logprobs: info.top.map((t) => ({ token: t.text, logprob: finiteLogprob(t.logprob), bytes: t.bytes })),
  };
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/**
 * Appends tokens to a completions logprobs object. `offset` is where the first token's text starts
 * in the choice's text; returns the offset after the last one. A null entry is a prompt's first
 * token (no logprob), `tokenId` then names it.
 */
export function appendCompletionLogprobs(
  out: CompletionLogprobs,
  entries: readonly (TokenLogprobInfo | null)[],
  offset: number,
  firstTokenText?: string,
): number {
  for (const entry of entries) {
    if (entry === null) {
      const text = firstTokenText ?? '';
      out.tokens.push(text);
      out.token_logprobs.push(null);
      out.top_logprobs.push(null);
      out.text_offset.push(offset);
      offset += text.length;
      continue;
    }
    out.tokens.push(entry.text);
    out.token_logprobs.push(finiteLogprob(entry.logprob));
    const top: Record<string, number> = {};
    for (const t of entry.top) top[t.text] = finiteLogprob(t.logprob);
    // The chosen token is always listed too (vLLM and OpenAI do the same).
    top[entry.text] ??= finiteLogprob(entry.logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += entry.text.length;
  }
  return offset;
}

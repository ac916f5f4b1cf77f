/**
 * Sentencepiece-style BPE tokenizer.json files (Mistral / Llama: a normalizer that turns spaces into
 * '▁', no pre-tokenizer) hand @huggingface/tokenizers the whole prompt as one word. Its BPE then runs
 * a priority queue over every character of the text, with a string key built per candidate pair, and
 * caches nothing (words of 256+ characters are not cached): 4.4 ms for a 100-word prompt, 36 ms for
 * 1,500 words on the dev machine, all of it on the event loop for short prompts.
 *
 * Cutting the text before every '▁' that follows another character (so a run of '▁' stays with the
 * word after it) gives the same ids whenever no token of the vocabulary has a '▁' right after another
 * character: BPE merges only ever make vocabulary tokens, so no merge can then span a cut, and BPE
 * picks merges by rank (ties: leftmost first), which restricted to one piece is the same order as
 * over the whole text. Byte fallback works per character either way. Each piece is short, so the BPE
 * runs on small queues and its LRU cache of words serves repeated words: 0.27 ms and 2.4 ms for the
 * texts above (test/unit/tokenizer/word-pieces.test.ts checks the ids against the unsplit tokenizer).
 *
 * The cut is the library's Split pre-tokenizer with `invert` (the pattern matches the pieces): the file's
 * pre-tokenizer when it has none (spaces made '▁' by the normalizer), or after its Metaspace pre-tokenizer (the newer
 * form of the same files; the library's Metaspace returns the text as one piece whatever its `split` says).
 * Applied only where the argument above holds; anything else keeps the file as it is.
 */

type JsonObject = Record<string, unknown>;

const METASPACE = '\u2581';
/** A run of '▁' and the word after it, or the text's first word when it has no '▁' before it. */
const PIECE_PATTERN = `${METASPACE}+[^${METASPACE}]*|[^${METASPACE}]+`;
/** A '▁' right after another character: a token like this could be the result of a merge across a cut. */
const INNER_METASPACE = new RegExp(`[^${METASPACE}]${METASPACE}`, 'u');

export interface WordPieces {
  /** tokenizer.json with the cut as its pre-tokenizer, or the input object itself when not applied. */
  tokenizerJson: JsonObject;
  applied: boolean;
  /** Why not applied (for the startup log). */
  reason?: string;
}

function mergeResults(merges: unknown): string[] | null {
  if (!Array.isArray(merges)) return null;
  const out: string[] = [];
  for (const m of merges) {
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') out.push(m[0] + m[1]);
    else if (typeof m === 'string' && m.includes(' ')) out.push(m.replace(' ', ''));
    else return null;
  }
  return out;
}

/** tokenizer.json with word pieces cut before BPE where that keeps every id (see above). */
export function withWordPieces(tokenizerJson: JsonObject): WordPieces {
  const keep = (reason: string): WordPieces => ({ tokenizerJson, applied: false, reason });
  const pre = tokenizerJson.pre_tokenizer as JsonObject | null | undefined;
  const metaspacePre = typeof pre === 'object' && pre !== null && pre.type === 'Metaspace' && (pre.replacement ?? METASPACE) === METASPACE;
  if (pre !== null && pre !== undefined && !metaspacePre) return keep('it has a pre-tokenizer other than Metaspace');
  const model = tokenizerJson.model as JsonObject | undefined;
  if (typeof model !== 'object' || model === null || model.type !== 'BPE') return keep('its model is not BPE');
  // word-level options change with the cut: a suffix on each word's last piece, random merge dropout
  for (const key of ['end_of_word_suffix', 'continuing_subword_suffix', 'dropout'] as const) {
    if (model[key] !== null && model[key] !== undefined) return keep(`its BPE sets ${key}`);
  }
  const vocab = model.vocab;
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) return keep('its vocabulary is not a token → id map');
  const merged = mergeResults(model.merges);
  if (merged === null) return keep('its merges are in an unknown form');
  for (const token of [...Object.keys(vocab), ...merged]) {
    if (INNER_METASPACE.test(token)) return keep(`token ${JSON.stringify(token)} has a '▁' after another character`);
  }
  const cut = { type: 'Split', pattern: { Regex: PIECE_PATTERN }, behavior: 'Isolated', invert: true };
  return {
    tokenizerJson: { ...tokenizerJson, pre_tokenizer: metaspacePre ? { type: 'Sequence', pretokenizers: [pre, cut] } : cut },
    applied: true,
  };
}

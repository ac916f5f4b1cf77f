/**
 * Worker-thread side of EncodePool: one @huggingface/tokenizers Tokenizer built from the same
 * tokenizer.json / tokenizer_config.json objects as the main thread's, so its ids are the ones
 * HfTokenizer.encode gives for the same text.
 *
 * Protocol (one task at a time; the pool never sends a second before the first is answered):
 *   workerData: EncoderSource
 *   {id, text, addSpecialTokens} → {id, kind: 'ids', ids: Int32Array (transferred)} | {id, kind: 'error', message}
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tokenizer } from '@huggingface/tokenizers';
import type { EncoderSource } from './model-tokenizer.js';

export interface EncodeTask {
  id: number;
  text: string;
  addSpecialTokens: boolean;
}

export type EncodeReply = { id: number; kind: 'ids'; ids: Int32Array } | { id: number; kind: 'error'; message: string };

const port = parentPort;
if (port === null) throw new Error('encode-worker must run in a worker thread');
const source = workerData as EncoderSource;
const tokenizer = new Tokenizer(source.tokenizerJson, source.tokenizerConfig);

port.on('message', (task: EncodeTask) => {
  let reply: EncodeReply;
  try {
    const ids = Int32Array.from(tokenizer.encode(task.text, { add_special_tokens: task.addSpecialTokens }).ids);
    reply = { id: task.id, kind: 'ids', ids };
    port.postMessage(reply, [ids.buffer]);
  } catch (err) {
    reply = { id: task.id, kind: 'error', message: err instanceof Error ? err.message : String(err) };
    port.postMessage(reply);
  }
});

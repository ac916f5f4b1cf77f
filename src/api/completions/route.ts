/**
 * POST /v1/completions: one or many prompts (text or token ids), echo, logprobs (prompt tokens
 * too with echo, so echo + logprobs + max_tokens 0 scores a prompt the lm-eval-harness way).
 * Choice index = prompt index × n + completion index, as vLLM and OpenAI number them.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { mergeStreams, type GenerationStream, type PromptInput, type ServingEvent } from '../../serving/index.js';
import { ApiError, toApiError } from '../errors.js';
import { SseWriter, clientGoneSignal, onClientGone } from '../sse.js';
import { checkModel, unixSeconds, type ApiContext } from '../shared/context.js';
import { appendCompletionLogprobs, emptyCompletionLogprobs, type CompletionLogprobs } from '../shared/logprobs-format.js';
import { checkStreamOptions, commonGenerateParams } from '../shared/sampling.js';
import { parseBody } from '../shared/validation.js';
import { completionRequestSchema, promptList, type CompletionRequest } from './schema.js';

const ROUTE = '/v1/completions';
/** OpenAI's and vLLM's default for the legacy completions endpoint. */
const DEFAULT_MAX_TOKENS = 16;

interface ChoiceState {
  text: string;
  logprobs: CompletionLogprobs | null;
  /** Length of `text` so far, for text_offset. */
  offset: number;
  finishReason: string | null;
  stopReason: string | number | null;
  completionTokens: number;
  /** Echoed prompt not yet sent (streaming). */
  echoPending: boolean;
}

function checkUnsupported(body: CompletionRequest): void {
  if (body.suffix !== undefined && body.suffix !== null && body.suffix !== '') {
    throw new ApiError('ZMB_ERR_UNSUPPORTED_PARAMETER', 'suffix: insertion (suffix) is not supported by this model', 'suffix');
  }
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== (body.n ?? 1)) {
    throw new ApiError('ZMB_ERR_UNSUPPORTED_PARAMETER', 'best_of: only best_of equal to n is supported', 'best_of');
  }
}

interface Prepared {
  prompts: PromptInput[];
  streams: GenerationStream[];
  n: number;
  echo: boolean;
}

export function registerCompletionsRoute(app: FastifyInstance, ctx: ApiContext): void {
  app.post(ROUTE, async (request, reply) => {
    const body = parseBody(completionRequestSchema, request.body);
    checkModel(ctx, body.model);
    checkUnsupported(body);
    checkStreamOptions(body);
    const echo = body.echo ?? false;
    const logprobs = body.logprobs ?? null;
    const list = promptList(body.prompt);
    // Long prompts are tokenized in workers; one failure (or the client leaving) drops the others.
    const encoding = new AbortController();
    const signal = AbortSignal.any([clientGoneSignal(reply), encoding.signal]);
    let prompts: PromptInput[];
    try {
      prompts = await Promise.all(list.map((p, i) => ctx.input.completionPrompt(p, list.length > 1 ? `prompt[${i}]` : 'prompt', signal)));
    } catch (err) {
      encoding.abort();
      throw err;
    }
    const requested = body.max_tokens === undefined ? DEFAULT_MAX_TOKENS : body.max_tokens;
    const maxTokens = prompts.map((p) => ctx.input.resolveMaxTokens(p.promptTokens.length, requested));
    const id = `cmpl-${randomUUID().replaceAll('-', '')}`;
    if (ctx.config.logRequests) request.log.info({ requestId: id, prompts: prompts.map((p) => p.promptText) }, 'completion prompts');
    const common = commonGenerateParams(body, ctx.input, logprobs, ctx.samplingDefaults);
    const streams: GenerationStream[] = [];
    try {
      prompts.forEach((p, i) => {
        streams.push(
          ctx.service.start({
            ...common,
            requestId: list.length > 1 ? `${id}-${i}` : id,
            promptTokens: p.promptTokens,
            maxTokens: maxTokens[i]!,
            promptLogprobs: echo && logprobs !== null ? logprobs : null,
          }),
        );
      });
    } catch (err) {
      // One prompt refused (e.g. overloaded): cancel the ones already submitted.
      for (const s of streams) s.abort();
      throw err;
    }
    onClientGone(reply, () => streams.forEach((s) => s.abort()));
    const prepared: Prepared = { prompts, streams, n: common.n, echo };
    const meta = { id, created: unixSeconds(), model: ctx.modelId };
    if (body.stream) return streamCompletions(ctx, reply, prepared, meta, body.stream_options?.include_usage ?? false, logprobs !== null);
    return complete(prepared, meta, logprobs !== null, ctx);
  });
}

function newChoices(prepared: Prepared, withLogprobs: boolean): ChoiceState[] {
  return Array.from({ length: prepared.prompts.length * prepared.n }, () => ({
    text: '',
    logprobs: withLogprobs ? emptyCompletionLogprobs() : null,
    offset: 0,
    finishReason: null,
    stopReason: null,
    completionTokens: 0,
    echoPending: prepared.echo,
  }));
}

/**
 * Applies one serving event of prompt `source` to the choices; returns the text (and the logprobs
 * added) per choice index, for streaming.
 */
function applyEvent(
  ctx: ApiContext,
  prepared: Prepared,
  choices: ChoiceState[],
  source: number,
  event: ServingEvent,
): { index: number; text: string; logprobs: CompletionLogprobs | null }[] {
  const prompt = prepared.prompts[source]!;
  const out: { index: number; text: string; logprobs: CompletionLogprobs | null }[] = [];
  const echoInto = (index: number, promptEntries: Parameters<typeof appendCompletionLogprobs>[1] | null) => {
    const c = choices[index]!;
    if (!c.echoPending) return null;
    c.echoPending = false;
    const added = c.logprobs ? emptyCompletionLogprobs() : null;
    if (added && promptEntries) {
      const firstId = prompt.promptTokens[0]!;
      appendCompletionLogprobs(added, promptEntries, c.offset, ctx.tokenizer.tokenText(firstId));
      mergeLogprobs(c.logprobs!, added);
    }
    c.text += prompt.promptText;
    c.offset += prompt.promptText.length;
    return { text: prompt.promptText, logprobs: added };
  };
  if (event.kind === 'prompt-logprobs') {
    for (let i = 0; i < prepared.n; i++) {
      const index = source * prepared.n + i;
      const echoed = echoInto(index, event.entries);
      if (echoed) out.push({ index, ...echoed });
    }
    return out;
  }
  const index = source * prepared.n + event.index;
  const c = choices[index]!;
  const echoed = echoInto(index, null);
  let text = echoed?.text ?? '';
  let added = echoed?.logprobs ?? (c.logprobs ? emptyCompletionLogprobs() : null);
  if (event.kind === 'delta') {
    if (added && event.logprobs) {
      appendCompletionLogprobs(added, event.logprobs, c.offset);
      mergeLogprobs(c.logprobs!, added);
    }
    c.text += event.text;
    c.offset += event.text.length;
    text += event.text;
  } else {
    c.finishReason = event.finishReason;
    c.stopReason = event.stopReason;
    c.completionTokens = event.completionTokens;
    if (!echoed) added = null;
  }
  if (text.length > 0 || (added && added.tokens.length > 0) || event.kind === 'delta') out.push({ index, text, logprobs: added });
  return out;
}

function mergeLogprobs(into: CompletionLogprobs, added: CompletionLogprobs): void {
  into.tokens.push(...added.tokens);
  into.token_logprobs.push(...added.token_logprobs);
  into.top_logprobs.push(...added.top_logprobs);
  into.text_offset.push(...added.text_offset);
}

function usage(prepared: Prepared, choices: ChoiceState[]) {
  const promptTokens = prepared.prompts.reduce((s, p) => s + p.promptTokens.length, 0);
  const completionTokens = choices.reduce((s, c) => s + c.completionTokens, 0);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

type Meta = { id: string; created: number; model: string };

async function complete(prepared: Prepared, meta: Meta, withLogprobs: boolean, ctx: ApiContext) {
  const choices = newChoices(prepared, withLogprobs);
  for await (const { source, value } of mergeStreams(prepared.streams)) applyEvent(ctx, prepared, choices, source, value);
  return {
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: choices.map((c, index) => ({
      index,
      text: c.text,
      logprobs: c.logprobs,
      finish_reason: c.finishReason,
      stop_reason: c.stopReason,
    })),
    usage: usage(prepared, choices),
  };
}

async function streamCompletions(ctx: ApiContext, reply: FastifyReply, prepared: Prepared, meta: Meta, includeUsage: boolean, withLogprobs: boolean) {
  const sse = new SseWriter(reply);
  const choices = newChoices(prepared, withLogprobs);
  const chunk = (choiceList: unknown[], usageValue?: unknown) => ({
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: choiceList,
    ...(includeUsage ? { usage: usageValue ?? null } : {}),
  });
  let status = 200;
  const abortAll = () => prepared.streams.forEach((s) => s.abort());
  try {
    for await (const { source, value } of mergeStreams(prepared.streams)) {
      if (sse.closed) break;
      for (const piece of applyEvent(ctx, prepared, choices, source, value)) {
        await sse.send(chunk([{ index: piece.index, text: piece.text, logprobs: piece.logprobs, finish_reason: null, stop_reason: null }]));
      }
      if (value.kind === 'finished') {
        const index = source * prepared.n + value.index;
        await sse.send(chunk([{ index, text: '', logprobs: null, finish_reason: value.finishReason, stop_reason: value.stopReason }]));
      }
    }
    if (sse.closed) {
      abortAll();
      status = 499;
      return;
    }
    if (includeUsage) await sse.send(chunk([], usage(prepared, choices)));
    sse.done();
  } catch (err) {
    abortAll();
    const apiError = toApiError(err);
    status = apiError.status;
    if (apiError.status >= 500) reply.log.error({ err, errorCode: apiError.errorName }, 'stream failed');
    await sse.sendError(apiError.toBody());
    sse.done();
  } finally {
    sse.end();
    ctx.metrics.countRequest(ROUTE, status);
  }
}

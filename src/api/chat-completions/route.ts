/**
 * POST /v1/chat/completions: validate → chat template → submit → JSON response or SSE stream.
 * A client that disconnects (streaming or not) cancels the request at once.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ChatMessage } from '../../tokenizer/index.js';
import type { GenerationStream, ServingEvent } from '../../serving/index.js';
import { ApiError, toApiError } from '../errors.js';
import { SseWriter, clientGoneSignal, onClientGone } from '../sse.js';
import { checkModel, unixSeconds, type ApiContext } from '../shared/context.js';
import { chatLogprobEntry, type ChatLogprobEntry } from '../shared/logprobs-format.js';
import { checkStreamOptions, commonGenerateParams } from '../shared/sampling.js';
import { invalid, parseBody } from '../shared/validation.js';
import { chatRequestSchema, type ChatRequest } from './schema.js';

const ROUTE = '/v1/chat/completions';

function toChatMessages(body: ChatRequest): ChatMessage[] {
  return body.messages.map((m, i) => {
    let content: string;
    if (m.content === undefined || m.content === null) {
      if (m.role !== 'assistant') throw invalid(`messages[${i}].content`, 'is required for this role');
      content = '';
    } else if (typeof m.content === 'string') {
      content = m.content;
    } else {
      content = m.content.map((p) => p.text ?? '').join('\n');
    }
    // "developer" is OpenAI's newer name for the system role; chat templates know "system".
    const role = m.role === 'developer' ? 'system' : m.role;
    return m.name ? { role, content, name: m.name } : { role, content };
  });
}

function checkUnsupported(body: ChatRequest): void {
  if (body.tools && body.tools.length > 0) {
    throw new ApiError('ZMB_ERR_UNSUPPORTED_PARAMETER', 'tools: tool calling is not supported by this server', 'tools');
  }
  if (body.response_format && body.response_format.type !== 'text') {
    throw new ApiError('ZMB_ERR_UNSUPPORTED_PARAMETER', `response_format: type "${body.response_format.type}" is not supported (only "text")`, 'response_format');
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && !body.logprobs) {
    throw invalid('top_logprobs', 'requires logprobs to be true');
  }
}

interface ChoiceState {
  text: string;
  logprobs: ChatLogprobEntry[];
  finishReason: string | null;
  stopReason: string | number | null;
  completionTokens: number;
}

export function registerChatCompletionsRoute(app: FastifyInstance, ctx: ApiContext): void {
  app.post(ROUTE, async (request, reply) => {
    const body = parseBody(chatRequestSchema, request.body);
    checkModel(ctx, body.model);
    checkUnsupported(body);
    checkStreamOptions(body);
    // Long prompts are tokenized in a worker; a client that leaves meanwhile gets nothing submitted.
    const prompt = await ctx.input.chatPrompt(toChatMessages(body), body.add_generation_prompt ?? true, clientGoneSignal(reply));
    const maxParam = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
    const maxTokens = ctx.input.resolveMaxTokens(prompt.promptTokens.length, body.max_completion_tokens ?? body.max_tokens ?? null, maxParam);
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    if (ctx.config.logRequests) request.log.info({ requestId: id, prompt: prompt.promptText }, 'chat prompt');
    const stream = ctx.service.start({
      ...commonGenerateParams(body, ctx.input, logprobs, ctx.samplingDefaults),
      requestId: id,
      promptTokens: prompt.promptTokens,
      maxTokens,
      promptLogprobs: null,
    });
    onClientGone(reply, () => stream.abort());
    const meta = { id, created: unixSeconds(), model: ctx.modelId, promptTokens: prompt.promptTokens.length, n: body.n ?? 1 };
    if (body.stream) return streamChat(ctx, reply, stream, meta, body.stream_options?.include_usage ?? false, logprobs !== null);
    return completeChat(ctx, request.log, stream, meta, logprobs !== null);
  });
}

type Meta = { id: string; created: number; model: string; promptTokens: number; n: number };

async function completeChat(
  ctx: ApiContext,
  log: { info: (obj: object, msg: string) => void },
  stream: GenerationStream,
  meta: Meta,
  withLogprobs: boolean,
) {
  const choices: ChoiceState[] = Array.from({ length: meta.n }, () => ({ text: '', logprobs: [], finishReason: null, stopReason: null, completionTokens: 0 }));
  for await (const event of stream) applyEvent(choices, event);
  const completionTokens = choices.reduce((s, c) => s + c.completionTokens, 0);
  if (ctx.config.logRequests) log.info({ requestId: meta.id, completions: choices.map((c) => c.text) }, 'chat completion');
  return {
    id: meta.id,
    object: 'chat.completion',
    created: meta.created,
    model: meta.model,
    choices: choices.map((c, index) => ({
      index,
      message: { role: 'assistant', content: c.text },
      logprobs: withLogprobs ? { content: c.logprobs } : null,
      finish_reason: c.finishReason,
      stop_reason: c.stopReason,
    })),
    usage: { prompt_tokens: meta.promptTokens, completion_tokens: completionTokens, total_tokens: meta.promptTokens + completionTokens },
  };
}

function applyEvent(choices: ChoiceState[], event: ServingEvent): void {
  if (event.kind === 'prompt-logprobs') return;
  const c = choices[event.index]!;
  if (event.kind === 'delta') {
    c.text += event.text;
    if (event.logprobs) c.logprobs.push(...event.logprobs.map(chatLogprobEntry));
  } else {
    c.finishReason = event.finishReason;
    c.stopReason = event.stopReason;
    c.completionTokens = event.completionTokens;
  }
}

async function streamChat(ctx: ApiContext, reply: FastifyReply, stream: GenerationStream, meta: Meta, includeUsage: boolean, withLogprobs: boolean) {
  const sse = new SseWriter(reply);
  const chunk = (choices: unknown[], usage?: unknown) => ({
    id: meta.id,
    object: 'chat.completion.chunk',
    created: meta.created,
    model: meta.model,
    choices,
    ...(includeUsage ? { usage: usage ?? null } : {}),
  });
  let completionTokens = 0;
  let status = 200;
  try {
    // OpenAI opens every choice with a role delta.
    for (let index = 0; index < meta.n; index++) {
      await sse.send(chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
    }
    for await (const event of stream) {
      if (sse.closed) break;
      if (event.kind === 'delta') {
        const logprobs = withLogprobs && event.logprobs ? { content: event.logprobs.map(chatLogprobEntry) } : null;
        await sse.send(chunk([{ index: event.index, delta: { content: event.text }, logprobs, finish_reason: null }]));
      } else if (event.kind === 'finished') {
        completionTokens += event.completionTokens;
        await sse.send(chunk([{ index: event.index, delta: {}, logprobs: null, finish_reason: event.finishReason, stop_reason: event.stopReason }]));
      }
    }
    if (sse.closed) {
      stream.abort();
      status = 499;
      return;
    }
    if (includeUsage) {
      await sse.send(chunk([], { prompt_tokens: meta.promptTokens, completion_tokens: completionTokens, total_tokens: meta.promptTokens + completionTokens }));
    }
    sse.done();
  } catch (err) {
    stream.abort();
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

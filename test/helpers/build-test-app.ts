/**
 * buildTestApp: the real app (routes, serving, tokenizer) over a ScriptedScheduler, for
 * app.inject tests of the HTTP surface. Nothing listens.
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { ServerMetrics } from '../../src/api/metrics/server-metrics.js';
import type { Readiness } from '../../src/api/shared/context.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { ServerConfig } from '../../src/config/schema.js';
import type { EngineDescription } from '../../src/engine/engine.js';
import type { SamplingDefaults } from '../../src/serving/index.js';
import { ScriptedScheduler, type ScriptOptions } from './scripted-scheduler.js';
import { CHATML_TEMPLATE, testTokenizer } from './tokenizer-fixture.js';

export const TEST_MODEL_ID = 'test-model';

export function testEngineDescription(overrides: Partial<EngineDescription> = {}): EngineDescription {
  return {
    kind: 'fake',
    modelId: TEST_MODEL_ID,
    dtype: 'float32',
    vocabSize: 32000,
    maxModelLen: 256,
    mambaLayerCount: 2,
    attentionLayerCount: 1,
    stateSlotBytes: 1024,
    kvPageBytes: 1024,
    tokensPerPage: 16,
    maxTokensPerStep: 512,
    maxSequencesPerStep: 8,
    cacheBudgetBytes: 1 << 20,
    eosTokenIds: [2],
    ...overrides,
  };
}

export interface TestApp {
  app: FastifyInstance;
  scheduler: ScriptedScheduler;
  metrics: ServerMetrics;
  readiness: Readiness;
  config: ServerConfig;
}

export interface TestAppOptions {
  config?: Partial<ServerConfig>;
  script?: Partial<ScriptOptions>;
  /** null = a base model without a chat template. */
  chatTemplate?: string | null;
  engine?: Partial<EngineDescription>;
  samplingDefaults?: SamplingDefaults;
}

/** Tokens of " word0 word1 …", as a model would emit them after a word. */
export function wordsScript(count = 8): ScriptOptions['tokens'] {
  const tok = testTokenizer();
  const text = Array.from({ length: count }, (_, i) => ` word${i}`).join('');
  const ids = tok.encode(`a${text}`, { addSpecialTokens: false }).slice(1);
  return () => ids;
}

export function buildTestApp(options: TestAppOptions = {}): TestApp {
  const config: ServerConfig = { ...loadConfig(), device: 'fake', logLevel: 'silent', ...options.config };
  const scheduler = new ScriptedScheduler({ tokens: wordsScript(), ...options.script });
  const metrics = new ServerMetrics();
  const readiness = { ready: true };
  const app = buildApp({
    config,
    scheduler,
    tokenizer: testTokenizer(options.chatTemplate === undefined ? CHATML_TEMPLATE : options.chatTemplate),
    engineDescription: testEngineDescription(options.engine),
    metrics,
    readiness,
    ...(options.samplingDefaults ? { samplingDefaults: options.samplingDefaults } : {}),
  });
  return { app, scheduler, metrics, readiness, config };
}

/** Parses an SSE body into its data payloads (JSON objects, or the string "[DONE]"). */
export function parseSse(body: string): unknown[] {
  return body
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => block.slice('data: '.length))
    .map((data) => (data === '[DONE]' ? data : JSON.parse(data)));
}

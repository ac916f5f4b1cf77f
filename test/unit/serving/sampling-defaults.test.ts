import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OPENAI_SAMPLING_DEFAULTS, samplingDefaultsFrom } from '../../../src/serving/index.js';
import { buildTestApp } from '../../helpers/build-test-app.js';

test('generation_config.json sampling fields become defaults; bad or missing ones fall back', () => {
  assert.deepEqual(samplingDefaultsFrom(null), OPENAI_SAMPLING_DEFAULTS);
  assert.deepEqual(samplingDefaultsFrom({ temperature: 0.6, top_p: 0.9, top_k: 40, repetition_penalty: 1.1, min_p: 'x', eos_token_id: 2 }), {
    temperature: 0.6,
    topP: 0.9,
    topK: 40,
    minP: 0,
    repetitionPenalty: 1.1,
  });
  assert.equal(samplingDefaultsFrom({ top_p: 0 }).topP, 1);
});

test('requests use the model defaults for fields they leave out, their own values otherwise', async () => {
  const { app, scheduler } = buildTestApp({ samplingDefaults: { temperature: 0.3, topP: 0.8, topK: 20, minP: 0.05, repetitionPenalty: 1.2 } });
  await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'a', max_tokens: 1 } });
  await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'a', max_tokens: 1, temperature: 0, top_k: -1, top_p: 1 } });
  const [implicit, explicit] = scheduler.records.map((r) => r.request.sampling);
  assert.deepEqual(
    [implicit!.temperature, implicit!.topP, implicit!.topK, implicit!.minP, implicit!.repetitionPenalty],
    [0.3, 0.8, 20, 0.05, 1.2],
  );
  assert.deepEqual([explicit!.temperature, explicit!.topP, explicit!.topK], [0, 1, 0]);
});

/**
 * The engine factory: --device picks fake, cpu or cuda. Engines are imported lazily so a CPU
 * server never loads the CUDA addon and the fake engine needs no checkpoint weights.
 *
 * Called once by src/cli/serve.ts at start-up; the caller owns (and closes) the engine.
 */
import type { ServerConfig } from '../config/schema.js';
import type { Engine } from './engine.js';
import { FakeEngine } from './fake/fake-engine.js';
import { UnavailableEngine } from './unavailable-engine.js';

export interface CreateEngineOptions {
  /** Local checkpoint folder (already resolved from a hub id). */
  modelDir: string;
  modelId: string;
  /** From the tokenizer: the fake engine emits ids the tokenizer can decode. */
  vocabSize: number;
  eosTokenId: number;
  logger?: { info(obj: object, msg?: string): void };
  /**
   * GPU index of this engine with --data-parallel N (0..N-1); absent = the default device. Passed
   * to the CUDA engine as `deviceIndex`; cpu and fake engines ignore it (N independent instances).
   */
  deviceIndex?: number;
}

/** Default context of the fake engine when --max-model-len is not given. */
const FAKE_MAX_MODEL_LEN = 4096;
/**
 * Chance per position that the fake engine's greedy choice is eos, so demo answers end on their
 * own (about 50 tokens on average) instead of running to the end of the context.
 */
const FAKE_EOS_PROBABILITY = 0.02;

export async function createEngine(config: ServerConfig, opts: CreateEngineOptions): Promise<Engine> {
  switch (config.device) {
    case 'fake':
      return new FakeEngine({
        modelId: opts.modelId,
        vocabSize: opts.vocabSize,
        maxModelLen: config.maxModelLen ?? FAKE_MAX_MODEL_LEN,
        stepLatencyMs: config.fakeStepLatencyMs,
        eosTokenId: opts.eosTokenId,
        eosProbability: FAKE_EOS_PROBABILITY,
        seed: config.seed,
        maxTokensPerStep: config.maxNumBatchedTokens,
        maxSequencesPerStep: config.maxNumSeqs,
      });
    case 'cpu': {
      const { createCpuEngine } = await import('./cpu/index.js');
      return createCpuEngine({
        modelDir: opts.modelDir,
        modelId: opts.modelId,
        ...(config.maxModelLen !== null ? { maxModelLen: config.maxModelLen } : {}),
        maxTokensPerStep: config.maxNumBatchedTokens,
        maxSequencesPerStep: config.maxNumSeqs,
        seed: config.seed,
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
    }
    case 'cuda': {
      // Loaded lazily: only a CUDA server touches the addon. Its own module is plain TypeScript.
      const cuda = await import('./cuda/index.js');
      try {
        return await cuda.createCudaEngine({
          modelDir: opts.modelDir,
          modelId: opts.modelId,
          ...(config.maxModelLen !== null ? { maxModelLen: config.maxModelLen } : {}),
          maxTokensPerStep: config.maxNumBatchedTokens,
          maxSequencesPerStep: config.maxNumSeqs,
          seed: config.seed,
          ...(opts.deviceIndex !== undefined ? { deviceIndex: opts.deviceIndex } : {}),
          ...(opts.logger ? { logger: opts.logger } : {}),
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        // A missing addon or no GPU is "unavailable" (start-up stops with this reason); anything
        // else (a bad checkpoint, out of memory) is a real failure and propagates as is.
        if (code === 'ZMB_CUDA_ADDON_MISSING' || code === 'ZMB_CUDA_NO_DEVICE') {
          return new UnavailableEngine(`--device cuda: ${(err as Error).message}; or use --device cpu`);
        }
        throw err;
      }
    }
  }
}

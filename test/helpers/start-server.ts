/**
 * Starts the real server (startServer: config → tokenizer → engine → scheduler → listen) on a
 * free port with the fake engine and a temporary model folder holding the llama2 tokenizer and a
 * ChatML template. For end-to-end tests; always `await server.stop()`.
 */
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { ServerConfig } from '../../src/config/schema.js';
import { makeModelDir, type ModelDirOptions } from './tokenizer-fixture.js';

export interface TestServer extends RunningServer {
  /** Graceful close + temp folder removal. */
  stop(): Promise<void>;
}

export async function startTestServer(config: Partial<ServerConfig> = {}, modelDir: ModelDirOptions = {}): Promise<TestServer> {
  const model = makeModelDir(modelDir);
  try {
    const running = await startServer(
      { ...loadConfig(), device: 'fake', host: '127.0.0.1', port: 0, logLevel: 'silent', model: model.dir, servedModelName: 'zamba2-fake', ...config },
      { logger: pino({ level: 'silent' }) },
    );
    return {
      ...running,
      stop: async () => {
        try {
          await running.close();
        } finally {
          model.cleanup();
        }
      },
    };
  } catch (err) {
    model.cleanup();
    throw err;
  }
}

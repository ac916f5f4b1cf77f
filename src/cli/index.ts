/**
 * The zamba2-serve command line: `serve` (the default), plus the model module's
 * `make-checkpoint` and `presets`. Returns the process exit code; errors are one line each.
 */
import closeWithGrace from 'close-with-grace';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { SERVER_VERSION } from '../api/health/route.js';
import { UsageError, parseServeArgs, serveUsage } from './args.js';
import { startServer } from './serve.js';

export async function runCli(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'make-checkpoint' || first === 'presets') {
    const commands = await import('../model/commands.js');
    return first === 'presets' ? commands.presetsCommand(rest) : commands.makeCheckpointCommand(rest);
  }
  if (first === 'help') {
    process.stdout.write(`${serveUsage()}\n`);
    return 0;
  }
  return serve(first === 'serve' ? rest : argv);
}

async function serve(argv: readonly string[]): Promise<number> {
  let config;
  try {
    const args = parseServeArgs(argv);
    if (args.help) {
      process.stdout.write(`${serveUsage()}\n`);
      return 0;
    }
    if (args.version) {
      process.stdout.write(`${SERVER_VERSION}\n`);
      return 0;
    }
    config = loadConfig({ cli: args.cli, env: process.env, configFile: args.configFile });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`zamba2-serve: ${err.message}\n\n${serveUsage()}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`zamba2-serve: ${err.message}\n`);
      return 1;
    }
    throw err;
  }

  let server;
  try {
    server = await startServer(config);
  } catch (err) {
    process.stderr.write(`zamba2-serve: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const running = server;
  // SIGTERM/SIGINT: graceful close, then exit 0; a second signal or the grace period + 10 s exits 1.
  closeWithGrace({ delay: (config.shutdownGraceSeconds + 10) * 1000 }, async ({ signal, err }) => {
    if (err) running.logger.error({ err }, 'fatal error, shutting down');
    else running.logger.info({ signal }, 'signal received');
    await running.close();
  });
  return new Promise<number>(() => {
    // Runs until a signal; close-with-grace exits the process.
  });
}

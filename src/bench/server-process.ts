/**
 * Starts the servers a bench run talks to, as child processes, and stops them afterwards:
 * - our server (`node dist/main.js`, or src/main.ts through tsx when the bench itself runs from
 *   sources, as the e2e test does), on a free port picked here;
 * - a baseline command (`--baseline-cmd`, any OpenAI-compatible server such as `vllm serve` or
 *   `transformers serve`), run through the shell in its own process group.
 * Both are ready when an HTTP probe answers 200; their output is kept (last lines only) for the
 * error message when they fail to start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { getOnce } from './sse-client.js';

const LOG_TAIL_LINES = 80;

export interface ServerProcess {
  baseUrl: string;
  /** The last lines the process wrote (stdout and stderr interleaved). */
  logTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit code (null if killed). */
  stop(graceMs?: number): Promise<number | null>;
}

/** A TCP port that was free a moment ago (the server binds it right after). */
export async function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** How to run src/main: the compiled file next to this one, or the .ts one through tsx. */
export function serverEntryCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return ['--import', 'tsx', join(dirname(here), '..', 'main.ts')];
  return [join(dirname(here), '..', 'main.js')];
}

export interface OurServerOptions {
  model: string | null;
  device: string | null;
  /** Extra flags for src/main (`--max-num-seqs 256`, `--fake-step-latency-ms 0`). */
  extraArgs: readonly string[];
  readyTimeoutMs: number;
  /** Copy the server's output to our stderr as it comes. */
  echoLogs: boolean;
}

export async function startOurServer(options: OurServerOptions): Promise<ServerProcess> {
  const host = '127.0.0.1';
  const port = await findFreePort(host);
  const args = [...serverEntryCommand(), '--host', host, '--port', String(port)];
  if (options.model !== null) args.push('--model', options.model);
  if (options.device !== null) args.push('--device', options.device);
  args.push(...options.extraArgs);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const server = watchProcess(child, `http://${host}:${port}`, options.echoLogs, () => child.kill('SIGTERM'), () => child.kill('SIGKILL'));
  await waitUntilReady(server, child, options.readyTimeoutMs, ['/ready', '/health']);
  return server;
}

export interface BaselineCommandOptions {
  /** Shell command line that starts the baseline server. */
  command: string;
  /** Where it will listen. */
  baseUrl: string;
  readyTimeoutMs: number;
  echoLogs: boolean;
}

export async function startBaselineCommand(options: BaselineCommandOptions): Promise<ServerProcess> {
  // Its own process group, so stopping it also stops whatever the shell started.
  const child = spawn(options.command, { shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const signalGroup = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is already gone
    }
  };
  const server = watchProcess(child, options.baseUrl.replace(/\/+$/, ''), options.echoLogs, () => signalGroup('SIGTERM'), () => signalGroup('SIGKILL'));
  await waitUntilReady(server, child, options.readyTimeoutMs, ['/health', '/v1/models']);
  return server;
}

/** Servers started and not yet stopped, so an interrupted bench can still stop them. */
const liveServers = new Set<ServerProcess>();

/** Stop every server this process started (cli.ts calls it on SIGINT/SIGTERM). */
export async function stopAllServers(graceMs = 5000): Promise<void> {
  await Promise.all([...liveServers].map((server) => server.stop(graceMs)));
}

function watchProcess(child: ChildProcess, baseUrl: string, echoLogs: boolean, term: () => void, kill: () => void): ServerProcess {
  const tail: string[] = [];
  const onOutput = (chunk: Buffer): void => {
    if (echoLogs) process.stderr.write(chunk);
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.length === 0) continue;
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
    }
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  const server: ServerProcess = {
    baseUrl,
    logTail: () => tail.join('\n'),
    stop: async (graceMs = 15_000) => {
      if (child.exitCode === null && child.signalCode === null) term();
      const timer = setTimeout(kill, graceMs);
      const code = await exited;
      clearTimeout(timer);
      liveServers.delete(server);
      return code;
    },
  };
  liveServers.add(server);
  return server;
}

async function waitUntilReady(server: ServerProcess, child: ChildProcess, timeoutMs: number, probePaths: readonly string[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before it was ready; its last output:\n${server.logTail()}`);
    }
    for (const path of probePaths) {
      const status = await probe(server.baseUrl + path);
      if (status === 200) return;
      if (status !== 404 && status !== null) break; // the probe exists but says "not yet"
    }
    await sleep(100);
  }
  await server.stop(2000);
  throw new Error(`server at ${server.baseUrl} not ready after ${timeoutMs} ms; its last output:\n${server.logTail()}`);
}

async function probe(url: string): Promise<number | null> {
  try {
    return (await getOnce(url, {}, 2000)).status;
  } catch {
    return null;
  }
}

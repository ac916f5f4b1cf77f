/**
 * A small hadolint-style checker for our Dockerfiles (no Docker engine or hadolint binary here).
 * Parses instructions (continuation lines joined, comments dropped), splits stages at FROM and
 * applies the rules below; each finding names the rule and the line. Used by
 * dockerfile-lint.test.ts on the real files and on bad examples that each rule must catch.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined with spaces. */
  args: string;
  /** 1-based line where the instruction starts. */
  line: number;
}

export interface Stage {
  /** Image reference as written (ARGs not yet substituted). */
  from: string;
  name: string | null;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  /** ARG defaults declared before the first FROM. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] ?? '';
    if (/^\s*(#.*)?$/.test(first)) continue;
    const start = i + 1;
    let joined = first;
    let continued = /\\\s*$/.test(first);
    while (continued && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, ' ');
      i += 1;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue; // comment lines inside a continued instruction
      joined += next;
      continued = /\\\s*$/.test(next);
    }
    joined = joined.replace(/\\\s*$/, ' ');
    const match = /^\s*(\w+)\s*(.*)$/s.exec(joined);
    if (match) instructions.push({ keyword: (match[1] ?? '').toUpperCase(), args: (match[2] ?? '').trim(), line: start });
  }
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      const asIndex = parts.findIndex((p) => p.toUpperCase() === 'AS');
      stages.push({ from: parts[0] ?? '', name: asIndex >= 0 ? (parts[asIndex + 1] ?? null) : null, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword === 'ARG') {
        const [name, value] = ins.args.split('=', 2);
        if (name !== undefined && value !== undefined) globalArgs[name.trim()] = value.trim().replace(/^"|"$/g, '');
      }
    } else {
      stages[stages.length - 1]?.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

export interface LintContext {
  /** The port the server listens on by default (config/default.json). */
  defaultPort: number;
  /** Repository root, for checking that COPY sources exist. */
  repoRoot: string;
}

export interface Finding {
  rule: string;
  line: number;
  message: string;
}

function substitute(text: string, args: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[a ?? b ?? ''] ?? `\${${a ?? b}}`);
}

/** Parses a JSON-array (exec form) argument list; null for shell form. */
function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  try {
    const parsed: unknown = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((p) => typeof p === 'string') ? (parsed as string[]) : null;
  } catch {
    return null;
  }
}

export function lintDockerfile(text: string, context: LintContext): Finding[] {
  const findings: Finding[] = [];
  const add = (rule: string, line: number, message: string): void => {
    findings.push({ rule, line, message });
  };
  const { globalArgs, stages } = parseDockerfile(text);
  if (stages.length === 0) {
    add('has-from', 1, 'no FROM instruction');
    return findings;
  }
  const stageNames = new Set<string>();
  for (const stage of stages) {
    const fromLine = (stage.instructions[0]?.line ?? 2) - 1;
    const image = substitute(stage.from, globalArgs);
    if (!stageNames.has(stage.from)) {
      // Pinned: an explicit tag (or digest), never "latest", no unresolved ARG.
      const withoutDigest = image.split('@')[0] ?? image;
      const tag = withoutDigest.includes(':') ? withoutDigest.slice(withoutDigest.lastIndexOf(':') + 1) : null;
      if (image.includes('${')) add('pinned-base', fromLine, `FROM ${stage.from}: ARG without a default`);
      else if (!image.includes('@') && (tag === null || tag.includes('/'))) add('pinned-base', fromLine, `FROM ${image}: no tag`);
      else if (tag === 'latest') add('pinned-base', fromLine, `FROM ${image}: "latest" is not a pinned version`);
    }
    if (stage.name !== null) stageNames.add(stage.name);

    let lockCopied = false;
    for (const ins of stage.instructions) {
      const args = ins.args;
      if (ins.keyword === 'ADD' && /(^|\s)(https?|ftp):\/\//.test(args)) add('no-add-url', ins.line, 'ADD of a URL: download in a RUN with a checksum, or COPY --from a pinned image');
      if (ins.keyword === 'ADD') add('copy-not-add', ins.line, 'use COPY (ADD unpacks archives and fetches URLs implicitly)');
      if (ins.keyword === 'COPY') {
        const parts = args.split(/\s+/);
        const fromOther = parts.some((p) => p.startsWith('--from='));
        const sources = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
        if (sources.some((s) => /package-lock\.json$/.test(s))) lockCopied = true;
        if (!fromOther) {
          for (const source of sources) {
            if (!/[*?]/.test(source) && !existsSync(join(context.repoRoot, source))) add('copy-source-exists', ins.line, `COPY source "${source}" is not in the repository`);
          }
        }
      }
      if (ins.keyword === 'RUN') {
        if (/\bnpm ci\b/.test(args) && !lockCopied) add('lockfile-before-npm-ci', ins.line, 'npm ci before package-lock.json was copied');
        if (/\bnpm (install|i)\b/.test(args)) add('npm-ci', ins.line, 'npm install in an image build: use npm ci (the lockfile decides)');
        if (/\bsudo\b/.test(args)) add('no-sudo', ins.line, 'sudo in RUN');
        if (/\bapt(-get)? (-\S+ )*install\b/.test(args)) {
          if (!/--no-install-recommends/.test(args)) add('apt-no-recommends', ins.line, 'apt-get install without --no-install-recommends');
          if (!/\s-y\b|--yes\b|--assume-yes\b/.test(args)) add('apt-yes', ins.line, 'apt-get install without -y');
          if (!/rm -rf \/var\/lib\/apt\/lists/.test(args)) add('apt-clean-lists', ins.line, 'apt-get install without rm -rf /var/lib/apt/lists/* in the same RUN');
          if (!/apt-get update/.test(args)) add('apt-update-same-run', ins.line, 'apt-get install without apt-get update in the same RUN (stale cache layer)');
        }
      }
    }
  }

  const final = stages[stages.length - 1] as Stage;
  const finalLine = (final.instructions[0]?.line ?? 2) - 1;
  const users = final.instructions.filter((i) => i.keyword === 'USER');
  const lastUser = users[users.length - 1];
  if (lastUser === undefined) add('non-root-user', finalLine, 'final stage has no USER: the server would run as root');
  else if (/^(root|0)(:.*)?$/.test(lastUser.args)) add('non-root-user', lastUser.line, `final stage runs as ${lastUser.args}`);

  const healthchecks = final.instructions.filter((i) => i.keyword === 'HEALTHCHECK');
  const healthcheck = healthchecks[healthchecks.length - 1];
  if (healthcheck === undefined || /^NONE\b/i.test(healthcheck.args)) add('healthcheck', finalLine, 'final stage has no HEALTHCHECK');
  else if (!healthcheck.args.includes('/health')) add('healthcheck', healthcheck.line, 'HEALTHCHECK does not probe /health');

  const exposes = final.instructions.filter((i) => i.keyword === 'EXPOSE');
  const exposedPorts = exposes.flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.split('/')[0]));
  if (!exposedPorts.includes(context.defaultPort)) add('expose-default-port', finalLine, `EXPOSE ${exposedPorts.join(' ') || '(none)'} does not include the default port ${context.defaultPort}`);
  for (const env of final.instructions.filter((i) => i.keyword === 'ENV')) {
    const port = /\bZAMBA2_PORT[= ]"?(\d+)/.exec(env.args);
    if (port && Number(port[1]) !== context.defaultPort && !exposedPorts.includes(Number(port[1]))) add('expose-default-port', env.line, `ZAMBA2_PORT=${port[1]} is not exposed`);
  }

  const entrypoints = final.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
  const entrypoint = entrypoints[entrypoints.length - 1];
  if (entrypoint === undefined) add('entrypoint-exec-form', finalLine, 'final stage has no ENTRYPOINT');
  else {
    const argv = execForm(entrypoint.args);
    if (argv === null) add('entrypoint-exec-form', entrypoint.line, 'ENTRYPOINT in shell form: SIGTERM would go to /bin/sh, not node');
    else if (!argv.includes('dist/main.js')) add('entrypoint-exec-form', entrypoint.line, 'ENTRYPOINT does not start dist/main.js');
  }
  const workdirs = final.instructions.filter((i) => i.keyword === 'WORKDIR');
  if (workdirs.length === 0) add('workdir', finalLine, 'final stage has no WORKDIR (relative dist/main.js)');
  return findings;
}

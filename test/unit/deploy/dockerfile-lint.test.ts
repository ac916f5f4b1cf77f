import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { lintDockerfile, parseDockerfile, type LintContext } from './dockerfile-lint.js';

const repoRoot = process.cwd();
const defaultPort = (JSON.parse(readFileSync('config/default.json', 'utf8')) as { port: number }).port;
const context: LintContext = { defaultPort, repoRoot };

function rules(text: string): string[] {
  return lintDockerfile(text, context).map((f) => f.rule);
}

for (const path of ['Dockerfile', 'docker/Dockerfile.cpu']) {
  test(`${path} passes every rule`, () => {
    assert.deepEqual(lintDockerfile(readFileSync(path, 'utf8'), context), []);
  });
}

test('the GPU image builds the addon in a CUDA devel stage and runs on the matching runtime', () => {
  const { globalArgs, stages } = parseDockerfile(readFileSync('Dockerfile', 'utf8'));
  const from = (name: string) => stages.find((s) => s.name === name)?.from.replace(/\$\{(\w+)\}/g, (_, a: string) => globalArgs[a] ?? '');
  assert.match(from('build') ?? '', /^nvidia\/cuda:[\d.]+-devel-ubuntu[\d.]+$/);
  assert.match(from('runtime') ?? '', /^nvidia\/cuda:[\d.]+-runtime-ubuntu[\d.]+$/);
  assert.equal(from('build')?.replace('-devel-', '-'), from('runtime')?.replace('-runtime-', '-'));
  assert.equal(stages.at(-1)?.name, 'runtime');
  const buildRuns = stages.find((s) => s.name === 'build')?.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n') ?? '';
  const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
  for (const script of ['build', 'build:cuda']) {
    assert.match(buildRuns, new RegExp(`npm run ${script}\\b`));
    assert.ok(scripts[script], `package.json has no "${script}" script`);
  }
  assert.match(buildRuns, /npm prune --omit=dev/);
  const runtimeCopies = stages.at(-1)?.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args).join('\n') ?? '';
  assert.match(runtimeCopies, /kernels\/build\/zamba2_cuda\.node/);
});

const GOOD = `ARG V=1.2.3
FROM node:\${V} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
FROM node:\${V}
WORKDIR /app
USER node
EXPOSE ${defaultPort}
HEALTHCHECK CMD ["node", "-e", "fetch('http://127.0.0.1:${defaultPort}/health')"]
ENTRYPOINT ["node", "dist/main.js"]
`;

test('a minimal good Dockerfile passes, so each bad variant below fails for its own reason', () => {
  assert.deepEqual(rules(GOOD), []);
});

test('each rule catches its regression', () => {
  const cases: Array<[string, string]> = [
    ['pinned-base', GOOD.replace('FROM node:${V} AS build', 'FROM node AS build')],
    ['pinned-base', GOOD.replace('FROM node:${V}\n', 'FROM node:latest\n')],
    ['pinned-base', GOOD.replace('ARG V=1.2.3', 'ARG V')],
    ['non-root-user', GOOD.replace('USER node', 'USER root')],
    ['non-root-user', GOOD.replace('USER node\n', '')],
    ['healthcheck', GOOD.replace(/HEALTHCHECK .*\n/, '')],
    ['healthcheck', GOOD.replace(/HEALTHCHECK .*\n/, 'HEALTHCHECK NONE\n')],
    ['apt-no-recommends', GOOD.replace('RUN npm ci', 'RUN apt-get update && apt-get install -y g++ && rm -rf /var/lib/apt/lists/*\nRUN npm ci')],
    ['apt-clean-lists', GOOD.replace('RUN npm ci', 'RUN apt-get update && apt-get install -y --no-install-recommends g++\nRUN npm ci')],
    ['apt-update-same-run', GOOD.replace('RUN npm ci', 'RUN apt-get install -y --no-install-recommends \\\n    g++ && rm -rf /var/lib/apt/lists/*\nRUN npm ci')],
    ['lockfile-before-npm-ci', GOOD.replace('COPY package.json package-lock.json ./', 'COPY package.json ./')],
    ['npm-ci', GOOD.replace('RUN npm ci', 'RUN npm install')],
    ['no-add-url', GOOD.replace('WORKDIR /src', 'WORKDIR /src\nADD https://example.com/node.tar.xz /tmp/')],
    ['copy-not-add', GOOD.replace('WORKDIR /src', 'WORKDIR /src\nADD package.json ./')],
    ['expose-default-port', GOOD.replace(`EXPOSE ${defaultPort}`, 'EXPOSE 3000')],
    ['entrypoint-exec-form', GOOD.replace('ENTRYPOINT ["node", "dist/main.js"]', 'ENTRYPOINT node dist/main.js')],
    ['copy-source-exists', GOOD.replace('COPY package.json package-lock.json ./', 'COPY package.json package-lock.json no-such-dir ./')],
    ['workdir', GOOD.replace('WORKDIR /app\n', '')],
  ];
  for (const [rule, text] of cases) assert.ok(rules(text).includes(rule), `expected "${rule}" in ${JSON.stringify(rules(text))} for:\n${text}`);
});

test('continuation lines and comments inside a RUN are joined into one instruction', () => {
  const { stages } = parseDockerfile('FROM a:1\nRUN apt-get update \\\n    # why\n    && apt-get install -y --no-install-recommends x \\\n    && rm -rf /var/lib/apt/lists/*\nUSER 1000\n');
  const run = stages[0]?.instructions[0];
  assert.equal(run?.keyword, 'RUN');
  assert.equal(run?.line, 2);
  assert.match(run?.args ?? '', /update .*install .*rm -rf/);
  assert.equal(stages[0]?.instructions[1]?.keyword, 'USER');
});

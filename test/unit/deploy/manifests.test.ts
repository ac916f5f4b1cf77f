// Kubernetes manifests and the compose file: parsed with `yaml` and checked against the server
// itself (probe paths are real routes, env names are real options, ports agree) so that a change on
// either side that breaks a deployment fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { loadConfig } from '../../../src/config/load-config.js';
import { CONFIG_KEYS, envName } from '../../../src/config/schema.js';
import { buildTestApp } from '../../helpers/build-test-app.js';

// Manifests are free-form YAML: read with `any` and checked by assertions.
type Obj = Record<string, any>;

const K8S_DIR = 'docker/k8s';
const defaultPort = (JSON.parse(readFileSync('config/default.json', 'utf8')) as { port: number }).port;

function loadManifests(): Obj[] {
  const docs: Obj[] = [];
  for (const file of readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
      const value = doc.toJS() as Obj | null;
      if (value !== null) docs.push({ ...value, __file: file });
    }
  }
  return docs;
}

const manifests = loadManifests();
const byKind = (kind: string): Obj => {
  const found = manifests.filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}`);
  return found[0] as Obj;
};
const deployment = byKind('Deployment');
const podSpec = deployment.spec.template.spec as Obj;
const container = podSpec.containers[0] as Obj;
const configMap = byKind('ConfigMap');

/** A probe's port, named or numbered, as a container port number. */
function probePort(port: string | number): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as Obj[]).find((p) => p.name === port);
  assert.ok(named, `no container port named "${port}"`);
  return named.containerPort as number;
}

test('every manifest is a named Kubernetes object, kustomization lists the core ones', () => {
  for (const m of manifests) {
    if (m.kind === 'Kustomization') continue;
    assert.ok(typeof m.apiVersion === 'string' && typeof m.kind === 'string', m.__file);
    assert.ok(typeof m.metadata?.name === 'string', `${m.__file}: metadata.name`);
  }
  const kustomization = byKind('Kustomization');
  const files = new Set(readdirSync(K8S_DIR));
  for (const resource of kustomization.resources as string[]) assert.ok(files.has(resource), `kustomization lists missing ${resource}`);
  for (const kind of ['Deployment', 'Service', 'ConfigMap', 'PodDisruptionBudget']) {
    const file = manifests.find((m) => m.kind === kind)?.__file;
    assert.ok((kustomization.resources as string[]).includes(file), `${kind} not in kustomization`);
  }
});

test('probes hit routes the server has, on the port it listens on', async () => {
  const { app } = buildTestApp();
  try {
    const probes = { readinessProbe: '/ready', livenessProbe: '/health', startupProbe: '/health' } as const;
    for (const [name, expectedPath] of Object.entries(probes)) {
      const probe = container[name] as Obj | undefined;
      assert.ok(probe, `${name} missing`);
      assert.equal(probe.httpGet.path, expectedPath, name);
      assert.equal(probePort(probe.httpGet.port), defaultPort, `${name} port`);
      const res = await app.inject({ method: 'GET', url: probe.httpGet.path });
      assert.equal(res.statusCode, 200, `GET ${probe.httpGet.path} on the real app`);
    }
    // Prometheus annotation and the HPA's metric come from the real /metrics.
    const annotations = deployment.spec.template.metadata.annotations as Obj;
    const metrics = await app.inject({ method: 'GET', url: annotations['prometheus.io/path'] });
    assert.equal(metrics.statusCode, 200);
    assert.equal(Number(annotations['prometheus.io/port']), defaultPort);
    const hpaMetric = byKind('HorizontalPodAutoscaler').spec.metrics[0].pods.metric.name as string;
    assert.match(metrics.body, new RegExp(`^# TYPE ${hpaMetric} gauge$`, 'm'));
  } finally {
    await app.close();
  }
});

test('the ConfigMap holds real options with valid values, and its port is the probes\' port', () => {
  const known = new Set(CONFIG_KEYS.map(envName));
  const data = configMap.data as Record<string, string>;
  for (const name of Object.keys(data)) assert.ok(known.has(name), `${name} is not a server option`);
  // The key file is the Secret mounted by the Deployment; here a stand-in file with two keys.
  const dir = mkdtempSync(join(tmpdir(), 'keys-'));
  const keyFile = join(dir, 'api-keys');
  writeFileSync(keyFile, 'k1\nk2\n');
  try {
    const config = loadConfig({ env: { ...data, [envName('apiKeyFile')]: keyFile } });
    assert.equal(config.port, probePort(container.readinessProbe.httpGet.port));
    assert.deepEqual(config.apiKey, ['k1', 'k2']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(container.envFrom, [{ configMapRef: { name: configMap.metadata.name } }]);
  const keyPath = data[envName('apiKeyFile')];
  assert.ok(keyPath, 'API keys come from a file');
  const mount = (container.volumeMounts as Obj[]).find((m) => keyPath.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${keyPath} is under no volume mount`);
  const volume = (podSpec.volumes as Obj[]).find((v) => v.name === mount.name);
  assert.ok(volume?.secret?.secretName, 'the key file comes from a Secret');
  const item = (volume.secret.items as Obj[]).find((i) => `${mount.mountPath}/${i.path}` === keyPath);
  assert.ok(item, `no Secret item is mounted at ${keyPath}`);
});

test('one GPU per pod, non-root, and SIGTERM has time to drain', () => {
  assert.equal(String(container.resources.limits['nvidia.com/gpu']), '1');
  assert.ok(deployment.spec.replicas >= 2, 'several replicas behind the Service');
  assert.equal(podSpec.securityContext.runAsNonRoot, true);
  const dockerfile = readFileSync('Dockerfile', 'utf8');
  assert.match(dockerfile, new RegExp(`--uid ${podSpec.securityContext.runAsUser}\\b`), 'runAsUser is the image user');
  assert.doesNotMatch(container.image as string, /:latest$|^[^:]+$/);
  const preStop = container.lifecycle.preStop.exec.command as string[];
  assert.equal(preStop[0], 'sleep');
  const drainS = loadConfig({ env: { ...configMap.data, [envName('apiKeyFile')]: undefined } }).shutdownGraceSeconds;
  assert.ok(podSpec.terminationGracePeriodSeconds > Number(preStop[1]) + drainS, 'grace period covers preStop + drain');
});

test('Service and PodDisruptionBudget select the Deployment\'s pods', () => {
  const labels = deployment.spec.template.metadata.labels as Record<string, string>;
  assert.deepEqual(deployment.spec.selector.matchLabels, labels);
  const service = byKind('Service');
  for (const [k, v] of Object.entries(service.spec.selector as Record<string, string>)) assert.equal(labels[k], v);
  assert.equal(probePort(service.spec.ports[0].targetPort), defaultPort);
  const pdb = byKind('PodDisruptionBudget');
  assert.deepEqual(pdb.spec.selector.matchLabels, labels);
  assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
  const hpa = byKind('HorizontalPodAutoscaler');
  assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
});

test('compose: GPU reservation, the default port, a healthcheck on /health, Prometheus scraping /metrics', () => {
  const compose = parse(readFileSync('docker/compose.yaml', 'utf8')) as Obj;
  const server = compose.services.zamba2 as Obj;
  const device = server.deploy.resources.reservations.devices[0] as Obj;
  assert.equal(device.driver, 'nvidia');
  assert.ok((device.capabilities as string[]).includes('gpu'));
  assert.ok((server.ports as string[]).some((p) => p.endsWith(`:${defaultPort}`)));
  assert.match(JSON.stringify(server.healthcheck.test), new RegExp(`:${defaultPort}/health`));
  assert.equal(server.build.dockerfile, 'Dockerfile');
  const drainS = Number(server.environment.ZAMBA2_SHUTDOWN_GRACE_SECONDS);
  assert.ok(Number.parseInt(server.stop_grace_period, 10) > drainS, 'stop_grace_period covers the drain');
  const prometheusService = compose.services.prometheus as Obj;
  assert.match(prometheusService.image, /^prom\/prometheus:v\d+\.\d+\.\d+$/);
  const mount = (prometheusService.volumes as string[]).find((v) => v.includes('prometheus.yml'));
  assert.ok(mount);
  const prometheus = parse(readFileSync(join('docker', mount.split(':')[0] ?? ''), 'utf8')) as Obj;
  const job = prometheus.scrape_configs[0] as Obj;
  assert.equal(job.metrics_path, '/metrics');
  assert.deepEqual(job.static_configs[0].targets, [`zamba2:${defaultPort}`]);
});

import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import type { ModelContract, RuntimeTarget, StateFile } from '../../status/src/schema.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildFlaskModelImage, buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { readHoldout } from '../helpers/flask-model.js';
import { liveStatus, startOrchestrator, stopOrchestrator, writeInventory, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// The SelfieLessActs acceptance flow in compressed time (4 s windows), on the orchestrator as
// users run it: it starts, replaces and removes the containers itself, through the real process
// driver and through real Docker, with the bundled worker and with the Python model image (whose
// paths differ: the worker template's contract).
const WINDOW_MS = 4_000;
const TOKEN = randomBytes(24).toString('hex');

interface Runtime {
  name: string;
  target: RuntimeTarget;
  /** The model's paths; the bundled worker's when absent. */
  contract?: ModelContract;
  /** A body its predict path takes. */
  body(): string;
  setup(): Promise<{ image?: string }>;
  cleanup(cluster: string): Promise<void>;
}

/** A runtime on the local Docker engine running `image`, built by `build`. */
function docker(name: string, image: string, build: (tag: string) => Promise<unknown>, model: Pick<Runtime, 'contract' | 'body'>): Runtime {
  return {
    name,
    target: { driver: 'docker' },
    ...model,
    async setup() {
      await ensureDockerEngine();
      await build(image);
      return { image };
    },
    async cleanup(cluster) {
      const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${cluster}`]);
      await removeDockerObjects(stdout.split('\n').filter(Boolean), [image]);
    },
  };
}

const workerBody = () => '{"text":"a fine day"}';
let digit = '';
const runtimes: Runtime[] = [
  { name: 'local processes', target: { driver: 'process' }, body: workerBody, setup: async () => ({}), cleanup: async () => {} },
  docker('Docker', `inference-worker:${uniqueName('acceptance')}`, buildWorkerImage, { body: workerBody }),
  docker(
    'Docker with the Python model image',
    `flask-model:${uniqueName('acceptance')}`,
    async (tag) => {
      await buildFlaskModelImage(tag);
      digit = JSON.stringify({ pixels: (await readHoldout(tag)).features[0] });
    },
    { contract: { predictPath: '/predict', healthPath: '/healthz' }, body: () => digit },
  ),
];

const admin = (url: string, path: string, body?: unknown) =>
  request(`${url}/admin${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

/** One request through the orchestrator: the container that answered, as it names itself. */
async function predict(url: string, body: string): Promise<string> {
  const response = await request(`${url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const answer = (await response.body.json()) as { container: string };
  expect(response.statusCode).toBe(200);
  return answer.container;
}

/** Requests a container served, as it counts them itself on its health path. */
async function served(port: number, healthPath: string): Promise<number> {
  const response = await request(`http://127.0.0.1:${port}${healthPath}`);
  return ((await response.body.json()) as { served: number }).served;
}

/** Poll /status until `check` accepts it. */
const statusWhen = (url: string, check: (s: StateFile) => boolean, what: string, timeoutMs = 20_000): Promise<StateFile> =>
  poll(async () => {
    const s = await liveStatus(url);
    return check(s) ? s : undefined;
  }, what, timeoutMs);

describe.each(runtimes)('the SelfieLessActs acceptance flow on $name', (runtime) => {
  let cluster: TempCluster;
  let orchestrator: OrchestratorProcess | undefined;
  const clusterName = uniqueName('acc').replace(/[^a-z0-9-]/g, '');

  beforeAll(async () => {
    const { image } = await runtime.setup();
    cluster = await tempCluster(1);
    // One worker, no containers yet: the orchestrator starts the minimum itself.
    await writeInventory(cluster, {
      name: clusterName,
      workers: 1,
      runtime: runtime.target,
      template: { ...(image ? { image } : {}), env: { ENABLE_CRASH_API: '1', LOG_LEVEL: 'warn' }, ...(runtime.contract ? { contract: runtime.contract } : {}) },
    });
  }, ENGINE_SETUP_TIMEOUT_MS + 600_000);

  afterAll(async () => {
    await stopOrchestrator(orchestrator);
    await cluster?.cleanup();
    await runtime.cleanup(clusterName);
  }, 120_000);

  it('1 container → 20 requests → 2 → 6 requests alternate 3/3 → crash → replaced on the same port → back to 1', { timeout: 120_000 }, async () => {
    const base = cluster.basePort;
    orchestrator = await startOrchestrator(cluster.statePath, [
      '--autoscale-policy', 'requests',
      '--scale-window-ms', String(WINDOW_MS),
      '--requests-per-container', '20',
      '--min-containers', '1',
      '--scale-down-cooldown-ms', '0',
      '--admin-token', TOKEN,
    ]);
    const { url } = orchestrator;
    const healthPath = runtime.contract?.healthPath ?? '/health';
    const send = () => predict(url, runtime.body());

    // One container on the first port, healthy.
    let status = await liveStatus(url);
    expect(status.containers.map((c) => [c.port, c.state])).toEqual([[base, 'free']]);
    const first = status.containers[0]!;

    // 20 requests; after the window, a second container on the next port.
    for (let i = 0; i < 20; i++) expect(await send()).toBe(first.id);
    status = await statusWhen(url, (s) => s.containers.filter((c) => c.state === 'free').length === 2, 'a second container', 3 * WINDOW_MS + 20_000);
    expect(status.containers.map((c) => c.port).sort()).toEqual([base, base + 1]);
    expect(status.autoscaler?.decisions.at(-1)).toMatchObject({ action: 'scale-out', current: 1, desired: 2, reason: expect.stringContaining('20 requests') });

    // Hold the count while we look: 6 requests alternate between the two, counted by the containers themselves.
    expect((await admin(url, '/autoscaler/pause')).statusCode).toBe(200);
    const servedBefore = await Promise.all(status.containers.map((c) => served(c.port, healthPath)));
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push(await send());
    const servedAfter = await Promise.all(status.containers.map((c) => served(c.port, healthPath)));
    expect(servedAfter.map((n, i) => n - servedBefore[i]!)).toEqual([3, 3]);
    for (let i = 1; i < 6; i++) expect(order[i]).not.toBe(order[i - 1]);

    // Crash the first: a new container (new runtime id) on the same port, healthy, back in rotation.
    const crash = await request(`http://127.0.0.1:${base}/api/v1/_crash`, { method: 'POST' });
    expect(crash.statusCode).toBe(200);
    await crash.body.dump();
    status = await statusWhen(
      url,
      (s) => s.containers.some((c) => c.port === base && c.restarts === 1 && c.state === 'free'),
      'the crashed container replaced',
    );
    const replaced = status.containers.find((c) => c.port === base)!;
    expect(replaced.runtimeId).not.toBe(first.runtimeId);
    expect(replaced.history.map((h) => h.state)).toEqual(expect.arrayContaining(['unhealthy', 'starting', 'free']));
    expect(await served(base, healthPath)).toBe(0);

    // Resume: a window with no requests wants one container again.
    expect((await admin(url, '/autoscaler/resume')).statusCode).toBe(200);
    status = await statusWhen(url, (s) => s.containers.length === 1, 'back to one container', 3 * WINDOW_MS + 20_000);
    expect(status.autoscaler?.decisions.at(-1)).toMatchObject({ action: 'scale-in', current: 2, desired: 1 });
    expect(await send()).toBe(status.containers[0]!.id);
  });
});

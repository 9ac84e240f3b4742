import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import type { RuntimeTarget, StateFile } from '../../status/src/schema.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { containerHealth, liveStatus, startOrchestrator, stopOrchestrator, writeInventory, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// The SelfieLessActs acceptance flow in compressed time (4 s windows), on the orchestrator as
// users run it: it starts, replaces and removes the containers itself, through the real process
// driver and through real Docker.
const WINDOW_MS = 4_000;
const TOKEN = randomBytes(24).toString('hex');

interface Runtime {
  name: string;
  target: RuntimeTarget;
  setup(): Promise<{ image?: string }>;
  cleanup(cluster: string): Promise<void>;
}

const dockerImage = `inference-worker:${uniqueName('acceptance')}`;
const runtimes: Runtime[] = [
  { name: 'local processes', target: { driver: 'process' }, setup: async () => ({}), cleanup: async () => {} },
  {
    name: 'Docker',
    target: { driver: 'docker' },
    async setup() {
      await ensureDockerEngine();
      await buildWorkerImage(dockerImage);
      return { image: dockerImage };
    },
    async cleanup(cluster) {
      const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${cluster}`]);
      await removeDockerObjects(stdout.split('\n').filter(Boolean), [dockerImage]);
    },
  },
];

const admin = (url: string, path: string, body?: unknown) =>
  request(`${url}/admin${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function predict(url: string): Promise<string> {
  const response = await request(`${url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"a fine day"}' });
  const body = (await response.body.json()) as { container: string };
  expect(response.statusCode).toBe(200);
  return body.container;
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
      template: { ...(image ? { image } : {}), env: { ENABLE_CRASH_API: '1', LOG_LEVEL: 'warn' } },
    });
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);

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

    // One container on the first port, healthy.
    let status = await liveStatus(url);
    expect(status.containers.map((c) => [c.port, c.state])).toEqual([[base, 'free']]);
    const first = status.containers[0]!;

    // 20 requests; after the window, a second container on the next port.
    for (let i = 0; i < 20; i++) expect(await predict(url)).toBe(first.id);
    status = await statusWhen(url, (s) => s.containers.filter((c) => c.state === 'free').length === 2, 'a second container', 3 * WINDOW_MS + 20_000);
    expect(status.containers.map((c) => c.port).sort()).toEqual([base, base + 1]);
    expect(status.autoscaler?.decisions.at(-1)).toMatchObject({ action: 'scale-out', current: 1, desired: 2, reason: expect.stringContaining('20 requests') });

    // Hold the count while we look: 6 requests alternate between the two, counted by the containers themselves.
    expect((await admin(url, '/autoscaler/pause')).statusCode).toBe(200);
    const servedBefore = await Promise.all(status.containers.map((c) => containerHealth(`http://127.0.0.1:${c.port}`)));
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push(await predict(url));
    const servedAfter = await Promise.all(status.containers.map((c) => containerHealth(`http://127.0.0.1:${c.port}`)));
    expect(servedAfter.map((h, i) => h.served - servedBefore[i]!.served)).toEqual([3, 3]);
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
    expect((await containerHealth(`http://127.0.0.1:${base}`)).served).toBe(0);

    // Resume: a window with no requests wants one container again.
    expect((await admin(url, '/autoscaler/resume')).statusCode).toBe(200);
    status = await statusWhen(url, (s) => s.containers.length === 1, 'back to one container', 3 * WINDOW_MS + 20_000);
    expect(status.autoscaler?.decisions.at(-1)).toMatchObject({ action: 'scale-in', current: 2, desired: 1 });
    expect(await predict(url)).toBe(status.containers[0]!.id);
  });
});

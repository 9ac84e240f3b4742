import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { StateStore } from '../../status/src/state-store.js';
import { emptyState, stateFileSchema } from '../../status/src/schema.js';
import type { ProvisionConfig } from '../../provisioning/src/config.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { probeHealth, waitHealthy } from '../../provisioning/src/wait-healthy.js';
import { useTempCluster } from '../helpers/cluster.js';
import { FAKE_WORKER_COMMAND, pidAlive, pidsGone } from '../helpers/processes.js';

const silent = pino({ level: 'silent' });
const provider = (config: ProvisionConfig, command: readonly string[] = FAKE_WORKER_COMMAND) => createProvider(config, silent, { command });
const provision = (config: ProvisionConfig, options: { reset?: boolean; command?: readonly string[] } = {}) =>
  provisionCluster(config, { provider: provider(config, options.command), reset: options.reset });
const teardown = (config: ProvisionConfig) => teardownCluster(config, { provider: provider(config) });

async function readState(path: string) {
  return stateFileSchema.parse(JSON.parse(await readFile(path, 'utf8')));
}
const pidsOf = (state: { containers: { runtimeId: string | null }[] }) => state.containers.map((c) => Number(c.runtimeId));

describe('provision and teardown (local processes)', () => {
  const cluster = useTempCluster();

  it('starts workers x containers healthy processes and records them in a valid state file', async () => {
    const config = cluster.config({ workers: 2 });
    const report = await provision(config);
    expect(report.started).toHaveLength(4);
    expect(report.kept).toEqual([]);

    const state = await readState(cluster.statePath);
    expect(state).toMatchObject({ cluster: 'local', writer: 'provisioning' });
    const base = cluster.basePort;
    // Each worker records its port range and how its containers are started, for the orchestrator to add or replace one.
    const template = { env: { WORK_MS: '0', ENABLE_CRASH_API: 'false' }, contract: { predictPath: '/run_model', healthPath: '/health' } };
    expect(state.workers).toEqual([
      { id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'provisioning', ports: { first: base, last: base + 9 }, template },
      { id: 'w2', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'provisioning', ports: { first: base + 10, last: base + 19 }, template },
    ]);
    expect(state.containers.map((c) => [c.id, c.workerId, c.port])).toEqual([
      [`w1-${base}`, 'w1', base],
      [`w1-${base + 1}`, 'w1', base + 1],
      [`w2-${base + 10}`, 'w2', base + 10],
      [`w2-${base + 11}`, 'w2', base + 11],
    ]);
    for (const container of state.containers) {
      expect(container).toMatchObject({ managed: true, state: 'free', limit: 1, inFlight: 0, served: 0, failures: 0, lastError: null });
      expect(pidAlive(Number(container.runtimeId))).toBe(true);
      expect(await probeHealth({ name: container.id, host: container.host, port: container.port }, '/health')).toEqual({ ok: true });
    }
  });

  it('adds nothing when run twice: same pids, all kept', async () => {
    const config = cluster.config({ workers: 2 });
    await provision(config);
    const first = await readState(cluster.statePath);

    const again = await provision(config);
    expect(again.started).toEqual([]);
    expect(again.kept).toHaveLength(4);
    expect(pidsOf(await readState(cluster.statePath))).toEqual(pidsOf(first));
  });

  it('starts only the missing workers when --workers grows, and stops the extra ones when it shrinks', async () => {
    await provision(cluster.config({ workers: 1 }));
    const one = pidsOf(await readState(cluster.statePath));

    const grown = await provision(cluster.config({ workers: 3 }));
    expect(grown.kept).toHaveLength(2);
    expect(grown.started).toEqual([`w2-${cluster.basePort + 10}`, `w2-${cluster.basePort + 11}`, `w3-${cluster.basePort + 20}`, `w3-${cluster.basePort + 21}`]);
    const three = pidsOf(await readState(cluster.statePath));
    expect(three.slice(0, 2)).toEqual(one);

    const shrunk = await provision(cluster.config({ workers: 1 }));
    expect(shrunk.removed).toHaveLength(4);
    expect(await pidsGone(three.slice(2))).toBe(true);
    expect((await readState(cluster.statePath)).workers.map((w) => w.id)).toEqual(['w1']);
  });

  it('replaces a recorded container that has died', async () => {
    const config = cluster.config({ workers: 1, containersPerWorker: 1 });
    await provision(config);
    const [pid] = pidsOf(await readState(cluster.statePath));
    process.kill(-pid!, 'SIGKILL');
    expect(await pidsGone([pid!])).toBe(true);

    const report = await provision(config);
    expect(report.started).toEqual([`w1-${cluster.basePort}`]);
    expect(report.removed).toEqual([`w1-${cluster.basePort}`]);
    expect(pidsOf(await readState(cluster.statePath))[0]).not.toBe(pid);
  });

  it('tears down every container, the inventory and the registry; a second teardown is a no-op', async () => {
    const config = cluster.config({ workers: 2 });
    await provision(config);
    const pids = pidsOf(await readState(cluster.statePath));

    const report = await teardown(config);
    expect(report.stopped).toHaveLength(4);
    expect(await pidsGone(pids)).toBe(true);
    const state = await readState(cluster.statePath);
    expect(state.workers).toEqual([]);
    expect(state.containers).toEqual([]);
    expect((await readdir(processDriverDirs(cluster.statePath, 'local').stateDir)).filter((f) => f.endsWith('.json'))).toEqual([]);

    expect((await teardown(config)).stopped).toEqual([]);
    expect((await readState(cluster.statePath)).containers).toEqual([]);
  });

  it('finds orphans the inventory does not list (a provision that crashed before writing it) by their cluster label', async () => {
    const config = cluster.config({ workers: 1, containersPerWorker: 1 });
    const driver = new ProcessDriver({ stateDir: processDriverDirs(cluster.statePath, 'local').stateDir, command: FAKE_WORKER_COMMAND });
    const orphan = await driver.start({
      name: 'w9-orphan',
      host: '127.0.0.1',
      port: cluster.basePort + 4,
      env: {},
      labels: { [LABELS.cluster]: 'local' },
    });

    const report = await teardown(config);
    expect(report.stopped).toEqual(['w9-orphan']);
    expect(await pidsGone([Number(orphan.runtimeId)])).toBe(true);
  });

  it('refuses a corrupted state file and leaves it untouched; --reset starts over', async () => {
    await writeFile(cluster.statePath, '{"version": 1, "cluster": ');
    const config = cluster.config({ workers: 1, containersPerWorker: 1 });
    await expect(provision(config)).rejects.toMatchObject({ code: 'STATE_FILE_INVALID' });
    await expect(teardown(config)).rejects.toMatchObject({ code: 'STATE_FILE_INVALID' });
    expect(await readFile(cluster.statePath, 'utf8')).toBe('{"version": 1, "cluster": ');
    expect(await readdir(cluster.dir)).toEqual(['state.json']);

    await provision(config, { reset: true });
    expect((await readState(cluster.statePath)).containers).toHaveLength(1);
  });

  it("refuses another cluster's state file", async () => {
    await new StateStore(cluster.statePath).write(emptyState('other', 'provisioning'));
    await expect(provision(cluster.config())).rejects.toMatchObject({ code: 'CLUSTER_MISMATCH' });
  });

  it('on a health timeout, stops what the run started and writes nothing', async () => {
    const config = cluster.config({ workers: 1, containersPerWorker: 2, healthTimeoutMs: 500 });
    // Runs, but never listens.
    const silentCommand = [process.execPath, '-e', 'setInterval(() => {}, 1000)'];
    const driver = new ProcessDriver({ stateDir: processDriverDirs(cluster.statePath, 'local').stateDir });

    const error = await provision(config, { command: silentCommand }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HEALTH_TIMEOUT' });
    expect((error as { pending: string[] }).pending).toHaveLength(2);
    expect(await driver.list({})).toEqual([]);
    await expect(readFile(cluster.statePath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('fails fast, naming the log, when a container exits during start', async () => {
    const config = cluster.config({ workers: 1, containersPerWorker: 1 });
    const before = Date.now();
    const error = await provision(config, { command: [process.execPath, '-e', 'process.exit(3)'] }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CONTAINER_EXITED' });
    expect((error as Error).message).toContain(join('logs', 'local', `w1-${cluster.basePort}.log`));
    expect(Date.now() - before).toBeLessThan(10_000);
  });

  it('refuses a port another program holds (PORT_IN_USE) and stops what it had started', async () => {
    const config = cluster.config({ workers: 2, containersPerWorker: 1 });
    const blocker = new ProcessDriver({ stateDir: join(cluster.dir, 'blocker'), command: FAKE_WORKER_COMMAND });
    const busy = await blocker.start({ name: 'squatter', host: '127.0.0.1', port: cluster.basePort + 10, env: {}, labels: {} });
    try {
      await waitHealthy([{ name: 'squatter', host: '127.0.0.1', port: cluster.basePort + 10 }], { healthPath: '/health', timeoutMs: 5_000, intervalMs: 50 });
      await expect(provision(config)).rejects.toMatchObject({ code: 'PORT_IN_USE' });
      const driver = new ProcessDriver({ stateDir: processDriverDirs(cluster.statePath, 'local').stateDir });
      expect(await driver.list({})).toEqual([]);
    } finally {
      await blocker.stop(busy.runtimeId, { timeoutMs: 1_000 });
    }
  });
});

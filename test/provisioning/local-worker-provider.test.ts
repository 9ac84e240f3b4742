import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { provisionCluster } from '../../provisioning/src/commands.js';
import type { ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider, createWorkerProvider } from '../../provisioning/src/create-provider.js';
import { workerLayout } from '../../provisioning/src/inventory.js';
import { portAnswers, probeHealth } from '../../provisioning/src/wait-healthy.js';
import { useTempCluster } from '../helpers/cluster.js';
import { FAKE_WORKER_COMMAND, pidAlive, pidsGone } from '../helpers/processes.js';

const silent = pino({ level: 'silent' });
// The worker app itself (no command override): what the orchestrator launches with.
const workers = (config: ProvisionConfig) => createWorkerProvider(config, silent);
/** The cluster's process registry, read as the provider reads it; what a test starts through it directly runs the stand-in worker. */
const registry = (config: ProvisionConfig) => new ProcessDriver({ stateDir: processDriverDirs(config.statePath, config.cluster).stateDir, command: FAKE_WORKER_COMMAND });

/** When the worker app logged that it listens (its pino line's `time`, epoch ms). */
async function listeningTime(logPath: string): Promise<number> {
  const lines = (await readFile(logPath, 'utf8')).split('\n').filter((line) => line.startsWith('{'));
  const listening = lines.map((line) => JSON.parse(line) as { msg?: string; time: number }).find((entry) => entry.msg === 'listening');
  if (!listening) throw new Error(`no 'listening' line in ${logPath}`);
  return listening.time;
}

/** A program holding 127.0.0.1:port (it accepts connections and answers nothing). */
async function squat(port: number): Promise<Server> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return server;
}

describe('workerLayout', () => {
  it('gives worker w<k> ports basePort+(k-1)*portStride+i, beyond the configured workers too', () => {
    const config = { basePort: 5000, portStride: 100, containersPerWorker: 2, host: '127.0.0.1' } as ProvisionConfig;
    expect(workerLayout(config, 'w12')).toEqual({
      id: 'w12',
      host: '127.0.0.1',
      ports: { first: 6100, last: 6199 },
      containers: [
        { name: 'w12-6100', workerId: 'w12', host: '127.0.0.1', port: 6100 },
        { name: 'w12-6101', workerId: 'w12', host: '127.0.0.1', port: 6101 },
      ],
    });
  });

  it('refuses an id that is not w<k>, or whose containers would pass port 65535 (WORKER_ID_INVALID)', () => {
    const config = { basePort: 5000, portStride: 100, containersPerWorker: 2, host: '127.0.0.1' } as ProvisionConfig;
    for (const id of ['w0', 'x1', 'w', 'w01', 'w1a', 'w607']) expect(() => workerLayout(config, id), id).toThrow(expect.objectContaining({ code: 'WORKER_ID_INVALID' }));
    expect(workerLayout(config, 'w606').containers.at(-1)!.port).toBe(65501);
  });
});

describe('LocalWorkerProvider on local processes', () => {
  const cluster = useTempCluster(3);

  it('launches w3 next to a provisioned w1: its port range, answering /health as itself, labelled; again it is adopted', async () => {
    const config = cluster.config({ workers: 1 });
    await provisionCluster(config, { provider: createProvider(config, silent, { command: FAKE_WORKER_COMMAND }) });
    const provider = workers(config);
    expect(provider.kind).toBe('process');

    const launched = await provider.launch('w3');

    const first = cluster.basePort + 20;
    expect(launched.adopted).toBe(false);
    expect(launched.worker).toMatchObject({ id: 'w3', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'provisioning', ports: { first, last: first + 9 } });
    expect(launched.containers.map((c) => [c.id, c.workerId, c.port, c.state, c.managed])).toEqual([
      [`w3-${first}`, 'w3', first, 'free', true],
      [`w3-${first + 1}`, 'w3', first + 1, 'free', true],
    ]);
    for (const c of launched.containers) {
      expect(pidAlive(Number(c.runtimeId))).toBe(true);
      expect(await probeHealth({ name: c.id, host: c.host, port: c.port }, '/health')).toEqual({ ok: true });
    }
    const { requestedAt, runningAt, healthyAt } = launched.timings;
    expect(requestedAt).toBeLessThanOrEqual(runningAt);
    expect(runningAt).toBeLessThanOrEqual(healthyAt);
    // Running is when the processes were spawned, before the apps listened (their logs' 'listening' lines), not once healthy.
    const listenedAt = await Promise.all(launched.containers.map((c) => listeningTime(join(processDriverDirs(config.statePath, config.cluster).logDir, `${c.id}.log`))));
    expect(runningAt).toBeLessThan(Math.max(...listenedAt));
    const labelled = await registry(config).list({ [LABELS.cluster]: config.cluster, [LABELS.worker]: 'w3' });
    expect(labelled.map((info) => [info.runtimeId, info.labels[LABELS.container], info.labels[LABELS.port]]).sort()).toEqual(
      launched.containers.map((c) => [c.runtimeId, c.id, String(c.port)]).sort(),
    );
    expect(await provider.list()).toEqual(['w1', 'w3']);

    const again = await provider.launch('w3');
    expect(again.adopted).toBe(true);
    expect(again.containers.map((c) => c.runtimeId)).toEqual(launched.containers.map((c) => c.runtimeId));
  });

  it('releases a worker: its processes stopped, its ports closed, gone from list(); a second release is a no-op', async () => {
    const config = cluster.config({ workers: 1 });
    const provider = workers(config);
    const kept = await provider.launch('w1');
    const launched = await provider.launch('w2');

    await provider.release('w2');

    expect(await pidsGone(launched.containers.map((c) => Number(c.runtimeId)))).toBe(true);
    for (const c of launched.containers) expect(await portAnswers(c.host, c.port)).toBe(false);
    expect(await provider.list()).toEqual(['w1']);
    await provider.release('w2');
    expect(await registry(config).list({ [LABELS.cluster]: config.cluster, [LABELS.worker]: 'w2' })).toEqual([]);
    for (const c of kept.containers) expect(pidAlive(Number(c.runtimeId))).toBe(true);
  });

  it('refuses a port another program holds (PORT_IN_USE) and leaves nothing of the worker', async () => {
    const config = cluster.config({ workers: 1 });
    const provider = workers(config);
    const squatter = await squat(cluster.basePort + 21);
    try {
      await expect(provider.launch('w3')).rejects.toMatchObject({ code: 'PORT_IN_USE' });
      expect(await registry(config).list({ [LABELS.cluster]: config.cluster })).toEqual([]);
      // Refused before any start: not even w3's free port got a process (the driver alone would refuse only the squatted one).
      expect(await readdir(processDriverDirs(config.statePath, config.cluster).logDir).catch(() => [])).toEqual([]);
      expect(await provider.list()).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it('an aborted launch rejects ABORTED and stops what it had started', async () => {
    const config = cluster.config({ workers: 1 });
    const provider = workers(config);
    const abort = new AbortController();
    const driver = registry(config);
    const launching = provider.launch('w2', abort.signal);
    // Once its processes run, before they answer.
    for (;;) {
      if ((await driver.list({ [LABELS.worker]: 'w2' })).length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    abort.abort();

    await expect(launching).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await driver.list({ [LABELS.cluster]: config.cluster })).toEqual([]);
    for (const port of [cluster.basePort + 10, cluster.basePort + 11]) expect(await portAnswers('127.0.0.1', port)).toBe(false);
  });

  it('list() names the workers whose containers carry the cluster label, live ones only, in worker order', async () => {
    const config = cluster.config({ workers: 1 });
    const driver = registry(config);
    const labels = (cluster: string, worker: string) => ({ [LABELS.cluster]: cluster, [LABELS.worker]: worker });
    const started = await Promise.all([
      driver.start({ name: 'w10-a', host: '127.0.0.1', port: cluster.basePort + 2, env: {}, labels: labels(config.cluster, 'w10') }),
      driver.start({ name: 'w2-a', host: '127.0.0.1', port: cluster.basePort + 3, env: {}, labels: labels(config.cluster, 'w2') }),
      driver.start({ name: 'other-a', host: '127.0.0.1', port: cluster.basePort + 4, env: {}, labels: labels('other', 'w4') }),
      driver.start({ name: 'w5-a', host: '127.0.0.1', port: cluster.basePort + 12, env: {}, labels: labels(config.cluster, 'w5') }),
    ]);
    await driver.stop(started[3]!.runtimeId, { timeoutMs: 1_000 });

    expect(await workers(config).list()).toEqual(['w2', 'w10']);
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import { containerLabels, type ContainerSpec } from '../../runtime/src/driver.js';
import { ContainerStartError, StartCancelledError } from '../../runtime/src/errors.js';
import { ProcessDriver } from '../../runtime/src/process-driver.js';
import { startHealthy } from '../../runtime/src/start-healthy.js';
import { probeHealth } from '../../provisioning/src/wait-healthy.js';
import { FAKE_WORKER_COMMAND, killGroups, pidAlive, pidsGone } from '../helpers/processes.js';

const HOST = '127.0.0.1';

describe('startHealthy (real process driver)', () => {
  let dir: string;
  let port: number;
  const pids = new Set<number>();

  const spec = (name: string): ContainerSpec => ({
    name,
    host: HOST,
    port,
    env: {},
    labels: containerLabels({ cluster: 'start-healthy', worker: 'w1', container: name, port, host: HOST }),
  });
  /** A driver whose starts are recorded, so cleanup finds them even when a test fails half-way. */
  const driverRunning = (command: readonly string[], stateDir: string): ProcessDriver => {
    const driver = new ProcessDriver({ stateDir: join(dir, stateDir), logDir: join(dir, 'logs'), command });
    const start = driver.start.bind(driver);
    driver.start = async (s) => {
      const info = await start(s);
      pids.add(Number(info.runtimeId));
      return info;
    };
    return driver;
  };
  const healthOf = (s: ContainerSpec) => async () => (await probeHealth(s, '/health', 500)).ok;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'start-healthy-'));
    port = await freeBasePort([0]);
  });
  afterEach(async () => {
    killGroups(pids);
    await pidsGone([...pids]);
    pids.clear();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves with the running container once its probe answers', async () => {
    const driver = driverRunning(FAKE_WORKER_COMMAND, 'ok');
    const s = spec('w1-ok');
    const info = await startHealthy(driver, s, { probe: healthOf(s), timeoutMs: 10_000, stopTimeoutMs: 2_000 });
    expect(info).toMatchObject({ name: 'w1-ok', state: 'running', port });
    expect(await probeHealth(s, '/health')).toEqual({ ok: true });
    expect((await driver.inspect(info.runtimeId))?.state).toBe('running');
  });

  it('rejects with ContainerStartError when it exits before answering, and leaves nothing behind', async () => {
    const driver = driverRunning([process.execPath, '-e', 'process.exit(3)'], 'exits');
    const s = spec('w1-exits');
    const error = await startHealthy(driver, s, { probe: healthOf(s), timeoutMs: 20_000, stopTimeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContainerStartError);
    expect(error).toMatchObject({ code: 'CONTAINER_START_FAILED', reason: 'exited', exitCode: 3, container: 'w1-exits' });
    // Found by its exit, long before the 20 s timeout, and forgotten by the runtime.
    expect(await driver.list({})).toEqual([]);
    expect(pids.size).toBe(1);
    expect([...pids].some(pidAlive)).toBe(false);
  });

  it('rejects with ContainerStartError past the timeout, and stops the process', async () => {
    const driver = driverRunning(FAKE_WORKER_COMMAND, 'late');
    const s = spec('w1-late');
    // It runs and answers, but the probe never accepts it: a model that never becomes ready.
    const error = await startHealthy(driver, s, { probe: async () => false, timeoutMs: 300, stopTimeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContainerStartError);
    expect(error).toMatchObject({ reason: 'timeout' });
    expect(await driver.list({})).toEqual([]);
    expect(await pidsGone([...pids])).toBe(true);
  });

  it('rejects with StartCancelledError on abort, and stops the process', async () => {
    const driver = driverRunning(FAKE_WORKER_COMMAND, 'cancel');
    const s = spec('w1-cancel');
    const controller = new AbortController();
    let probes = 0;
    const started = startHealthy(driver, s, {
      probe: async () => {
        if (++probes === 3) controller.abort();
        return false;
      },
      timeoutMs: 30_000,
      stopTimeoutMs: 2_000,
      signal: controller.signal,
    });
    await expect(started).rejects.toBeInstanceOf(StartCancelledError);
    expect(pids.size).toBe(1);
    expect(await driver.list({})).toEqual([]);
    expect(await pidsGone([...pids])).toBe(true);
  });

  it('starts nothing when already cancelled', async () => {
    const driver = driverRunning(FAKE_WORKER_COMMAND, 'precancelled');
    const s = spec('w1-pre');
    await expect(startHealthy(driver, s, { probe: healthOf(s), timeoutMs: 1_000, stopTimeoutMs: 1_000, signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'START_CANCELLED',
    });
    expect(pids.size).toBe(0);
  });
});

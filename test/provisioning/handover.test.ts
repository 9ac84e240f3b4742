import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { provisionCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig } from '../../provisioning/src/config.js';
import { inventoryOwner, workerSettingDifferences } from '../../provisioning/src/handover.js';
import type { Provider } from '../../provisioning/src/provider.js';
import { emptyState, type StateFile } from '../../status/src/schema.js';
import { acquireStateLock } from '../../status/src/state-lock.js';

const config = (flags: Record<string, unknown> = {}) => loadProvisionConfig({ env: {}, flags: { statePath: '/tmp/x/state.json', ...flags } });
/** What provisionCluster records: the resolved config as JSON keeps it (undefined keys dropped). */
const recorded = (flags: Record<string, unknown> = {}) => JSON.parse(JSON.stringify(config(flags))) as Record<string, unknown>;

describe('workerSettingDifferences', () => {
  it('finds none between a run and the config it recorded', () => {
    expect(workerSettingDifferences(config({ workMs: 5, basePort: 20000 }), recorded({ workMs: 5, basePort: 20000 }))).toEqual([]);
  });

  it('ignores what does not change how a worker is made: how many, how long to wait, where the state is, how to log', () => {
    const run = config({ workers: 5, healthTimeoutMs: 1_000, launchTimeoutMs: 2_000, logLevel: 'debug', statePath: '/elsewhere/state.json' });
    expect(workerSettingDifferences(run, recorded())).toEqual([]);
  });

  it.each([
    ['runtime', { runtime: 'docker' }],
    ['workMs', { workMs: 7 }],
    ['basePort', { basePort: 6000 }],
    ['portStride', { portStride: 50 }],
    ['containersPerWorker', { containersPerWorker: 3 }],
    ['host', { host: '127.0.0.2' }],
    ['enableCrashApi', { enableCrashApi: true }],
  ])('names a different %s', (key, flags) => {
    const differences = workerSettingDifferences(config(flags), recorded());
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatch(new RegExp(`^${key} `));
  });

  it('names a setting set on one side only, and compares a key it does not know (one added later)', () => {
    expect(workerSettingDifferences(config({ runtime: 'docker', cpus: 0.5 }), recorded({ runtime: 'docker' }))).toEqual(['cpus is 0.5, recorded unset']);
    expect(workerSettingDifferences(config(), { ...recorded(), gpuDriver: 'x' })).toEqual(['gpuDriver is unset, recorded "x"']);
  });
});

describe('inventoryOwner', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'handover-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const stateWith = (orchestrator: StateFile['orchestrator']): StateFile => ({ ...emptyState('local', 'orchestrator'), orchestrator });
  const running = { pid: process.pid, url: 'http://127.0.0.1:1', startedAt: new Date().toISOString(), running: true };

  it('is the orchestrator the state file says runs, while its lock names a live process here', async () => {
    const statePath = join(dir, 'state.json');
    const lock = await acquireStateLock(statePath);
    expect(await inventoryOwner(statePath, stateWith(running))).toEqual({ pid: process.pid, url: running.url });
    // One on an EC2 instance of its own writes its own state: out of reach, today's behaviour.
    expect(await inventoryOwner(statePath, stateWith({ ...running, instanceId: 'i-0123' }))).toBeNull();
    expect(await inventoryOwner(statePath, stateWith({ ...running, running: false }))).toBeNull();
    await lock.release();
    // Without its lock (it died), the file is provisioning's again.
    expect(await inventoryOwner(statePath, stateWith(running))).toBeNull();
  });

  it('refuses --reset while an orchestrator holds the lock: the file is not deleted under it', async () => {
    const statePath = join(dir, 'state.json');
    await writeFile(statePath, JSON.stringify(stateWith(running)));
    const lock = await acquireStateLock(statePath);
    const provider = { name: 'unused' } as unknown as Provider;
    await expect(provisionCluster(config({ statePath }), { provider, reset: true })).rejects.toMatchObject({ code: 'STATE_LOCKED' });
    expect(JSON.parse(await readFile(statePath, 'utf8'))).toMatchObject({ orchestrator: { running: true } });
    await lock.release();
  });

  it('asks the cost guard before handing a provision over: a launch refused launches nothing through the orchestrator', async () => {
    const statePath = join(dir, 'state.json');
    await writeFile(statePath, JSON.stringify(stateWith(running)));
    const lock = await acquireStateLock(statePath);
    const provider = { name: 'unused' } as unknown as Provider;
    let asked = 0;
    const confirm = async (): Promise<void> => {
      asked++;
      throw Object.assign(new Error('not confirmed'), { code: 'LAUNCH_NOT_CONFIRMED' });
    };
    // The orchestrator's URL answers nothing: the refusal must come before any call to it.
    await expect(provisionCluster(config({ statePath }), { provider, confirm, adminToken: 'x'.repeat(32) })).rejects.toMatchObject({ code: 'LAUNCH_NOT_CONFIRMED' });
    expect(asked).toBe(1);
    await lock.release();
  });
});

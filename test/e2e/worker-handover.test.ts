import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import type { ProvisionReport, TeardownReport } from '../../provisioning/src/commands.js';
import type { ContainerRecord } from '../../status/src/schema.js';
import { runEntry, type CliResult } from '../helpers/cli.js';
import { tempCluster, TEST_PORT_STRIDE, type TempCluster } from '../helpers/cluster.js';
import { poll } from '../helpers/docker.js';
import { DRILL_FLAGS } from '../helpers/fault-drills.js';
import { cleanEnv, liveStatus, readState, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';
import { clientKeysEnv } from '../helpers/client-keys.js';
import { pidAlive, pidsGone } from '../helpers/processes.js';

// Workers join and leave a running orchestrator: `npm run provision` and `npm run teardown` hand
// their changes to it through its admin API (the state file is its own while it runs), on local
// worker processes, under load from the load script.

const TOKEN = 'worker-handover-admin-token';
/**
 * Long enough per request that 2,000 of them (on 4 to 6 containers, one request each at a time:
 * about 45 s) last past a worker's launch and another's drain, each through a CLI that takes
 * seconds to start on a busy 2-core machine (the test fails if the load ends first). Timer-based
 * work: it costs no CPU.
 */
const WORK_MS = '100';
/** How long a test's orchestrator gets to stop on SIGTERM before it is killed. */
const STOP_GRACE_MS = 30_000;

const provision = (temp: TempCluster, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
  runEntry('provisioning/src/main.ts', ['provision', '--work-ms', WORK_MS, ...temp.cliFlags, ...args], { env: { ...cleanEnv, ...env }, timeoutMs: 90_000 });
const teardown = (temp: TempCluster, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
  runEntry('provisioning/src/main.ts', ['teardown', ...temp.cliFlags, ...args], { env: { ...cleanEnv, ...env }, timeoutMs: 90_000 });

/** Whether something listens on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const workersOf = (containers: ContainerRecord[]): string[] => [...new Set(containers.map((c) => c.workerId))].sort();

describe('workers join and leave a running orchestrator through provisioning', () => {
  let temp: TempCluster | undefined;
  let orchestrator: OrchestratorProcess | undefined;

  beforeEach(async () => {
    temp = await tempCluster(3);
    const provisioned = await provision(temp, []);
    expect(provisioned.code, provisioned.stderr).toBe(0);
  }, 120_000);

  afterEach(async () => {
    // SIGTERM first: starts under way end and are registered, so the cleanup below finds and stops them.
    if (orchestrator) await Promise.race([stopOrchestrator(orchestrator), sleep(STOP_GRACE_MS)]);
    if (orchestrator && orchestrator.child.exitCode === null && orchestrator.child.signalCode === null) orchestrator.child.kill('SIGKILL');
    await orchestrator?.exited;
    orchestrator = undefined;
    // Stops every worker process the registry lists, w3 included.
    await temp?.cleanup();
    temp = undefined;
  }, 60_000);

  it('w3 joins and w1 leaves while 2,000 requests run: every one answered 200, w3 served some, w1 gone, the orchestrator never restarted', { timeout: 240_000 }, async () => {
    orchestrator = await startOrchestrator(temp!.statePath, DRILL_FLAGS, { env: { ORCH_ADMIN_TOKEN: TOKEN } });
    const { url } = orchestrator;
    const pid = orchestrator.child.pid!;
    const w1 = (await readState(temp!.statePath)).containers.filter((c) => c.workerId === 'w1');
    expect(w1).toHaveLength(2);

    const load = runEntry('load/src/main.ts', ['--url', `${url}/new_request`, '--requests', '2000', '--concurrency', '8', '--json', '-', '--no-progress'], {
      env: cleanEnv,
      timeoutMs: 180_000,
    });
    let loadEnded = false;
    void load.then(() => (loadEnded = true));
    // The load in full flow before anything changes.
    await poll(async () => ((await liveStatus(url)).counters!.completed >= 100 ? true : undefined), 'the load under way', 30_000, 20);

    const joined = await provision(temp!, ['--workers', '3', '--json'], { ORCH_ADMIN_TOKEN: TOKEN });
    expect(joined.code, joined.stderr).toBe(0);
    const joinReport = JSON.parse(joined.stdout) as ProvisionReport;
    expect(joinReport.handover).toMatchObject({ orchestrator: { pid, url }, added: ['w3'], removed: [], autoscalers: [] });
    expect(workersOf(joinReport.containers)).toEqual(['w1', 'w2', 'w3']);

    const left = await teardown(temp!, ['--worker', 'w1', '--json'], { ORCH_ADMIN_TOKEN: TOKEN });
    expect(left.code, left.stderr).toBe(0);
    const leaveReport = JSON.parse(left.stdout) as TeardownReport;
    expect(leaveReport).toMatchObject({ worker: 'w1', handover: { orchestrator: { pid }, removed: ['w1'] } });
    expect(leaveReport.stopped.sort()).toEqual(w1.map((c) => c.id).sort());
    // Both changes happened under load.
    expect(loadEnded).toBe(false);

    const done = await load;
    expect(done.code, done.stderr).toBe(0);
    const result = JSON.parse(done.stdout) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 2000 });
    expect(result.errors).toEqual({});
    expect(result.failed).toBe(0);
    const byWorker: Record<string, number> = {};
    for (const [container, count] of Object.entries(result.servedBy)) byWorker[container.split('-')[0]!] = (byWorker[container.split('-')[0]!] ?? 0) + count;
    expect(byWorker.w3).toBeGreaterThan(0);
    expect(byWorker.w1).toBeGreaterThan(0);

    // The same orchestrator all along, w1's processes gone and its ports closed.
    expect(orchestrator.child.exitCode).toBeNull();
    expect((await liveStatus(url)).orchestrator?.pid).toBe(pid);
    expect(await pidsGone(w1.map((c) => Number(c.runtimeId)))).toBe(true);
    for (const c of w1) expect(await listening(c.port)).toBe(false);
    // The orchestrator wrote the change into its state file; provisioning did not.
    const state = await poll(async () => {
      const s = await readState(temp!.statePath);
      return s.writer === 'orchestrator' && s.workers.map((w) => w.id).sort().join() === 'w2,w3' ? s : undefined;
    }, 'the state file listing w2 and w3', 10_000);
    expect(workersOf(state.containers)).toEqual(['w2', 'w3']);
    expect(state.counters?.failed).toBe(0);
  });

  it('refuses to provision past a running orchestrator without its token, with a wrong one, or with other worker settings: nothing changes', { timeout: 180_000 }, async () => {
    orchestrator = await startOrchestrator(temp!.statePath, DRILL_FLAGS, { env: { ORCH_ADMIN_TOKEN: TOKEN } });
    const before = await readFile(temp!.statePath, 'utf8');
    const runtimeIds = (await liveStatus(orchestrator.url)).containers.map((c) => c.runtimeId).sort();
    // Where w3's first container would listen.
    const w3Port = temp!.basePort + 2 * TEST_PORT_STRIDE;

    const noToken = await provision(temp!, ['--workers', '3']);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/\[ORCHESTRATOR_RUNNING\]\n$/);
    const wrongToken = await provision(temp!, ['--workers', '3'], { ORCH_ADMIN_TOKEN: `not-${TOKEN}` });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toMatch(/\[ADMIN_TOKEN_REJECTED\]\n$/);
    // Workers made otherwise than recorded (another WORK_MS) would be made so only by this run, never by the orchestrator.
    const changed = await provision(temp!, ['--workers', '3', '--work-ms', '1'], { ORCH_ADMIN_TOKEN: TOKEN });
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(/workMs.*\[PROVISIONING_CHANGED\]\n$/);
    const noTokenTeardown = await teardown(temp!, ['--worker', 'w1']);
    expect(noTokenTeardown.code).toBe(1);
    expect(noTokenTeardown.stderr).toMatch(/\[ORCHESTRATOR_RUNNING\]\n$/);

    expect(await listening(w3Port)).toBe(false);
    const status = await liveStatus(orchestrator.url);
    expect(status.workers.map((w) => w.id)).toEqual(['w1', 'w2']);
    expect(status.containers.map((c) => c.runtimeId).sort()).toEqual(runtimeIds);
    for (const id of runtimeIds) expect(pidAlive(Number(id))).toBe(true);
    // Only the orchestrator writes the file: the same workers and containers as before these runs.
    const after = await readState(temp!.statePath);
    const was = JSON.parse(before) as typeof after;
    expect(after.workers.map((w) => w.id)).toEqual(was.workers.map((w) => w.id));
    expect(after.containers.map((c) => c.runtimeId).sort()).toEqual(runtimeIds);
  });

  it('tears the whole cluster down through a running orchestrator whose status needs a read key: its autoscaler paused first, every worker drained and released, the file left to it', { timeout: 180_000 }, async () => {
    // Client keys guard /status: the handover reads it with the admin token, which reads too.
    const keys = clientKeysEnv([{ name: 'reader', key: 'orch_handover-read-key-0123456789', scopes: ['read'] }, { name: 'app', key: 'orch_handover-infer-key-0123456789', scopes: ['infer'] }]);
    orchestrator = await startOrchestrator(temp!.statePath, DRILL_FLAGS, { env: { ORCH_ADMIN_TOKEN: TOKEN, ...keys } });
    const { url } = orchestrator;
    await expect(liveStatus(url)).rejects.toThrow(/401/);
    const containers = (await liveStatus(url, TOKEN)).containers;
    const down = await teardown(temp!, ['--json'], { ORCH_ADMIN_TOKEN: TOKEN });
    expect(down.code, down.stderr).toBe(0);
    const report = JSON.parse(down.stdout) as TeardownReport;
    expect(report.handover).toMatchObject({ orchestrator: { pid: orchestrator.child.pid }, removed: ['w1', 'w2'] });
    expect(report.stopped.sort()).toEqual(containers.map((c) => c.id).sort());
    expect(await pidsGone(containers.map((c) => Number(c.runtimeId)))).toBe(true);
    for (const c of containers) expect(await listening(c.port)).toBe(false);
    // Still running, with nothing to relaunch them: its autoscaler paused, its inventory empty.
    const status = await liveStatus(url, TOKEN);
    expect(status).toMatchObject({ workers: [], containers: [], autoscaler: { paused: true }, orchestrator: { pid: orchestrator.child.pid } });
  });

  it('takes one worker down without an orchestrator: released, and gone from the state file with its containers', { timeout: 120_000 }, async () => {
    const w1 = (await readState(temp!.statePath)).containers.filter((c) => c.workerId === 'w1');
    const left = await teardown(temp!, ['--worker', 'w1', '--json']);
    expect(left.code, left.stderr).toBe(0);
    expect((JSON.parse(left.stdout) as TeardownReport).handover).toBeUndefined();
    expect(await pidsGone(w1.map((c) => Number(c.runtimeId)))).toBe(true);
    for (const c of w1) expect(await listening(c.port)).toBe(false);
    const state = await readState(temp!.statePath);
    expect(state.workers.map((w) => w.id)).toEqual(['w2']);
    expect(workersOf(state.containers)).toEqual(['w2']);
    expect(state.writer).toBe('provisioning');
  });
});

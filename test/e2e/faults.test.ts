import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import {
  hangingContainer,
  killDrillOrchestrators,
  randomKills,
  sigkillThenRestart,
  sigtermUnderLoad,
  slowThenRecovering,
  workerWipedOut,
  type DrillCluster,
} from '../helpers/fault-drills.js';
import { cleanEnv as env } from '../helpers/orchestrator-process.js';

// The fault drills on the local default: each "container" a worker process, killed with SIGKILL.
// One cluster (2 workers × 2 containers) for the file; the drills run one after the other on it.
let temp: TempCluster;
let cluster: DrillCluster;

beforeAll(async () => {
  temp = await tempCluster(2);
  const provisioned = await runEntry('provisioning/src/main.ts', ['provision', '--work-ms', '5', '--enable-crash-api', ...temp.cliFlags], { env });
  expect(provisioned.code, provisioned.stderr).toBe(0);
  const driver = new ProcessDriver({ stateDir: processDriverDirs(temp.statePath, 'local').stateDir });
  cluster = {
    statePath: temp.statePath,
    kill: async (runtimeId) => {
      process.kill(Number(runtimeId), 'SIGKILL');
    },
    running: async () => (await driver.list({})).filter((info) => info.state === 'running').map((info) => info.runtimeId),
  };
}, 120_000);

afterEach(killDrillOrchestrators);

afterAll(async () => {
  if (!temp) return;
  await runEntry('provisioning/src/main.ts', ['teardown', ...temp.cliFlags], { env });
  await temp.cleanup();
}, 60_000);

describe('fault drills under load, on worker processes', () => {
  it('a random container killed every 3 s for a minute: no request lost, every kill recovered', { timeout: 150_000 }, () =>
    randomKills(cluster, { durationMs: 60_000, everyMs: 3_000 }));

  it('every container of a worker killed at once: the others carry the load, all are replaced', { timeout: 90_000 }, () => workerWipedOut(cluster, 'w1'));

  it('a container that hangs on /run_model but answers /health: timed out, redispatched, replaced', { timeout: 90_000 }, () => hangingContainer(cluster));

  it('a container slow for 5 s, under its probe timeout: never leaves the rotation, no flapping', { timeout: 60_000 }, () => slowThenRecovering(cluster));

  it('SIGTERM under load: every request read is answered, the rest refused', { timeout: 60_000 }, () => sigtermUnderLoad(cluster));

  it('SIGKILL under load: the status file stays whole; a restart reconciles, starting nothing twice', { timeout: 60_000 }, () => sigkillThenRestart(cluster));
});

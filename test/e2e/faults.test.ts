import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { describeDrills, cleanUpDrills, processDrillCluster, type DrillCluster } from '../helpers/fault-drills.js';
import { cleanEnv as env } from '../helpers/orchestrator-process.js';

// The fault drills on the local default: each "container" a worker process, killed with SIGKILL.
// One cluster (2 workers × 2 containers) for the file; the drills run one after the other on it.
let temp: TempCluster;
let cluster: DrillCluster;

beforeAll(async () => {
  temp = await tempCluster(2);
  const provisioned = await runEntry('provisioning/src/main.ts', ['provision', '--work-ms', '5', '--enable-crash-api', ...temp.cliFlags], { env });
  expect(provisioned.code, provisioned.stderr).toBe(0);
  cluster = processDrillCluster(temp.statePath);
}, 120_000);

afterEach(cleanUpDrills);

afterAll(async () => {
  if (!temp) return;
  await runEntry('provisioning/src/main.ts', ['teardown', ...temp.cliFlags], { env });
  await temp.cleanup();
}, 60_000);

describeDrills('worker processes', () => cluster);

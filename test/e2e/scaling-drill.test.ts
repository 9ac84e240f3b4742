import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import type { ScalingDecision, StateFile } from '../../status/src/schema.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, TEST_PORT_STRIDE, type TempCluster } from '../helpers/cluster.js';
import { poll } from '../helpers/docker.js';
import { cleanUpDrills, DRILL_FLAGS, drillLoad, expectNoneLost, expectSettled, processDrillCluster, type DrillCluster } from '../helpers/fault-drills.js';
import { cleanEnv, liveStatus, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// Scaling 4 -> 16 -> 4 through the admin API under load, on worker processes: two workers of up to
// 8 containers each (maxContainersPerWorker), so 16 needs every slot, and maxScaleStep 8, so each
// way takes more than one pass of the autoscaler.

const TOKEN = 'scaling-drill-admin-token';
/** How long a test's orchestrator gets to stop on SIGTERM before it is killed. */
const STOP_GRACE_MS = 40_000;
/** Ports of worker k are base + (k-1) * stride + 0..7: 8 containers on each of 2 workers. */
const PORT_OFFSETS = [0, 1].flatMap((w) => Array.from({ length: 8 }, (_, i) => w * TEST_PORT_STRIDE + i));

/** In rotation: healthy and not draining, as /status shows it. */
const inRotation = (status: StateFile): number => status.containers.filter((c) => c.state === 'free' || c.state === 'busy').length;

const spread = (status: StateFile): Record<string, number> => {
  const byWorker: Record<string, number> = {};
  for (const c of status.containers) byWorker[c.workerId] = (byWorker[c.workerId] ?? 0) + 1;
  return byWorker;
};

/**
 * Reads /status every ~50 ms until stopped, keeping the fewest containers in rotation it saw. Not
 * in fault-drills.ts, which counts outcomes, not the pool over time.
 */
function sampleRotation(url: string): { stop(): Promise<{ samples: number; fewest: number }> } {
  let running = true;
  let samples = 0;
  let fewest = Infinity;
  // A /status that fails ends the sampling; stop() then throws it.
  const loop = (async (): Promise<unknown> => {
    try {
      while (running) {
        const status = await liveStatus(url);
        samples++;
        fewest = Math.min(fewest, inRotation(status));
        // The sampling period itself, not a wait for a condition.
        await sleep(50);
      }
      return undefined;
    } catch (error) {
      return error;
    }
  })();
  return {
    async stop() {
      running = false;
      const error = await loop;
      if (error) throw error;
      return { samples, fewest };
    },
  };
}

describe('scaling drill under load, on worker processes', () => {
  let temp: TempCluster | undefined;
  let cluster: DrillCluster;
  let orchestrator: OrchestratorProcess | undefined;
  let sampler: ReturnType<typeof sampleRotation> | undefined;

  beforeEach(async () => {
    temp = await tempCluster(2);
    const basePort = await freeBasePort(PORT_OFFSETS);
    const provisioned = await runEntry(
      'provisioning/src/main.ts',
      ['provision', '--work-ms', '5', '--state-path', temp.statePath, '--base-port', String(basePort), '--port-stride', String(TEST_PORT_STRIDE)],
      { env: cleanEnv },
    );
    expect(provisioned.code, provisioned.stderr).toBe(0);
    cluster = processDrillCluster(temp.statePath);
  }, 120_000);

  afterEach(async () => {
    await sampler?.stop().catch(() => {});
    await cleanUpDrills();
    // SIGTERM first: the orchestrator lets the starts under way end, each registered with the process
    // driver, so the cleanup below finds and stops it. A SIGKILL between spawning a worker process and
    // registering it would leave that process running unseen.
    if (orchestrator) await Promise.race([stopOrchestrator(orchestrator), sleep(STOP_GRACE_MS)]);
    if (orchestrator && orchestrator.child.exitCode === null && orchestrator.child.signalCode === null) orchestrator.child.kill('SIGKILL');
    await orchestrator?.exited;
    // Stops every worker process the registry lists, the orchestrator's scale-outs included.
    await temp?.cleanup();
  }, 60_000);

  async function scale(containers: number): Promise<ScalingDecision> {
    const response = await request(`${orchestrator!.url}/admin/scale`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ containers }),
    });
    const body = (await response.body.json()) as { decision: ScalingDecision };
    expect(response.statusCode, JSON.stringify(body)).toBe(202);
    return body.decision;
  }

  /** Until exactly `count` containers exist, all in rotation. */
  const settledAt = (count: number, what: string): Promise<StateFile> =>
    poll(async () => {
      const status = await liveStatus(orchestrator!.url);
      return status.containers.length === count && inRotation(status) === count ? status : undefined;
    }, what, 90_000);

  it('4 -> 16 -> 4, then 16 and back to 4 while the new containers start: every request answered by the model, never none in rotation, 2/2 at the end', { timeout: 300_000 }, async () => {
    orchestrator = await startOrchestrator(
      cluster.statePath,
      [...DRILL_FLAGS, '--max-containers', '16', '--max-containers-per-worker', '8', '--max-scale-step', '8', '--scale-interval-ms', '250'],
      { env: { ORCH_ADMIN_TOKEN: TOKEN } },
    );
    const { url } = orchestrator;
    expect(spread(await liveStatus(url))).toEqual({ w1: 2, w2: 2 });
    sampler = sampleRotation(url);
    const load = drillLoad(orchestrator, 6);

    // Out: 8 in the first step, the other 4 on a later pass.
    expect(await scale(16)).toMatchObject({ action: 'scale-out', current: 4, desired: 12 });
    expect(spread(await settledAt(16, '16 containers in rotation'))).toEqual({ w1: 8, w2: 8 });

    // In, under load: idle containers only, the rest on later passes, the most crowded worker first.
    expect(await scale(4)).toMatchObject({ action: 'scale-in', current: 16 });
    expect(spread(await settledAt(4, 'back to 4 containers'))).toEqual({ w1: 2, w2: 2 });

    // Out, and in again at once: the containers just placed are still starting (and count: 12, or 16 if a
    // pass came in between), so they go, their starts cancelled, rather than the 4 serving.
    expect(await scale(16)).toMatchObject({ action: 'scale-out', current: 4, desired: 12 });
    const scaleIn = await scale(4);
    expect(scaleIn.action).toBe('scale-in');
    expect(scaleIn.current).toBeGreaterThanOrEqual(12);
    const end = await settledAt(4, 'back to 4 containers after the cancelled scale-out');
    expect(spread(end)).toEqual({ w1: 2, w2: 2 });

    const outcomes = await load.stop();
    const rotation = await sampler.stop();
    expectNoneLost(outcomes);
    expect(outcomes.model).toBeGreaterThan(0);
    expect(rotation.samples).toBeGreaterThan(20);
    expect(rotation.fewest).toBeGreaterThanOrEqual(1);
    const settled = await expectSettled(cluster, url);
    expect(spread(settled)).toEqual({ w1: 2, w2: 2 });
    expect(settled.counters?.failed).toBe(0);
    expect(orchestrator.output.stdout).toContain('"msg":"container start cancelled"');
    await stopOrchestrator(orchestrator);
  });
});

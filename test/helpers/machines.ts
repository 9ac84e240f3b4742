import { expect } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import type { StateFile } from '../../status/src/schema.js';
import { runEntry } from './cli.js';
import { poll } from './docker.js';
import { cleanEnv, liveStatus, readState } from './orchestrator-process.js';

/** A machine autoscaler that reacts within a test's patience: 2 containers per worker, 1 to 3 workers. */
export const MACHINE_SCALING_FLAGS = [
  '--autoscale-policy', 'concurrency',
  '--scale-interval-ms', '500',
  '--min-containers', '1',
  '--max-containers', '6',
  '--max-containers-per-worker', '2',
  '--scale-down-stabilization-ms', '2000',
  '--scale-down-cooldown-ms', '0',
  '--min-workers', '1',
  '--max-workers', '3',
  '--worker-surplus-ms', '2000',
  '--worker-scale-down-cooldown-ms', '0',
];

const workerIds = (s: StateFile): string[] => s.workers.map((w) => w.id).sort();

/**
 * With one provisioned worker w1 behind the orchestrator at `url` (MACHINE_SCALING_FLAGS, containers
 * taking tens of ms), fire `requests` at 16 at once: every one is answered, the cluster grows to w1-w3
 * and each launch's time is accounted for; once idle it releases w2 and w3 and keeps w1.
 */
export async function growAndShrink(url: string, statePath: string, options: { requests: number; timeoutMs: number }): Promise<StateFile> {
  expect(workerIds(await liveStatus(url))).toEqual(['w1']);
  const load = await runEntry(
    'load/src/main.ts',
    ['--url', `${url}/new_request`, '--requests', String(options.requests), '--threads', '2', '--concurrency', '16', '--no-progress', '--json', '-'],
    { env: cleanEnv, timeoutMs: options.timeoutMs },
  );
  expect(load.code, load.stderr).toBe(0);
  const result = JSON.parse(load.stdout) as LoadResult;
  expect(result.statusCodes).toEqual({ '200': options.requests });
  expect(new Set(Object.keys(result.servedBy).map((id) => id.split('-')[0]))).toEqual(new Set(['w1', 'w2', 'w3']));

  const grown = await readState(statePath);
  expect(grown.machines!.decisions.filter((d) => d.action === 'launched').map((d) => d.workerId).sort()).toEqual(['w2', 'w3']);
  expect(grown.machines!.decisions.find((d) => d.action === 'launch')!.reason).toMatch(/container\(s\) the autoscaler wants fit on no worker/);
  for (const timing of grown.machines!.launches) {
    expect(timing.decisionMs).toBeGreaterThanOrEqual(0);
    expect(timing.launchMs + timing.startMs + timing.probeMs).toBeGreaterThan(0);
  }

  const shrunk = await poll(
    async () => {
      const s = await liveStatus(url);
      return workerIds(s).length === 1 && s.machines!.releasing.length === 0 ? s : undefined;
    },
    'back to one worker',
    90_000,
  );
  // The autoscaler's own workers go; the provisioned one stays.
  expect(workerIds(shrunk)).toEqual(['w1']);
  expect(shrunk.workers[0]!.state).toBe('up');
  const released = shrunk.machines!.decisions.filter((d) => d.action === 'released');
  expect(released.map((d) => d.workerId).sort()).toEqual(['w2', 'w3']);
  expect(released[0]!.reason).toMatch(/^surplus for 2 s/);
  expect(shrunk.machines!.counts).toMatchObject({ launched: 2, released: 2, launchFailed: 0 });
  return shrunk;
}

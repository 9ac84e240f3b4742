import { afterEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import { runEntry } from '../helpers/cli.js';
import { useTempCluster } from '../helpers/cluster.js';
import { poll } from '../helpers/docker.js';
import { cleanEnv, liveStatus, startOrchestrator, stopOrchestrator, writeInventory, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

describe('the concurrency policy under sustained load', () => {
  const cluster = useTempCluster(2);
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(() => stopOrchestrator(orchestrator));

  it('scales out across both workers while the load lasts, then back in once, without flapping', { timeout: 120_000 }, async () => {
    // Two empty workers; containers take 50 ms per request, as a small model would.
    await writeInventory(cluster, { workers: 2, runtime: { driver: 'process' }, template: { env: { WORK_MS: '50', LOG_LEVEL: 'warn' } } });
    orchestrator = await startOrchestrator(cluster.statePath, [
      '--autoscale-policy', 'concurrency',
      '--scale-interval-ms', '1000',
      '--max-containers', '6',
      '--max-containers-per-worker', '3',
      '--max-scale-step', '3',
      '--scale-down-stabilization-ms', '4000',
      '--scale-down-cooldown-ms', '0',
    ]);
    const { url } = orchestrator;
    expect((await liveStatus(url)).containers).toHaveLength(1);

    const load = await runEntry(
      'load/src/main.ts',
      ['--url', `${url}/new_request`, '--requests', '1200', '--threads', '2', '--concurrency', '32', '--no-progress', '--json', '-'],
      { env: cleanEnv, timeoutMs: 90_000 },
    );
    expect(load.code, load.stderr).toBe(0);
    const result = JSON.parse(load.stdout) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 1200 });
    // The load reached the maximum, spread over both workers.
    expect(Object.keys(result.servedBy)).toHaveLength(6);
    expect(new Set(Object.keys(result.servedBy).map((id) => id.split('-')[0]))).toEqual(new Set(['w1', 'w2']));

    const after = await poll(async () => {
      const s = await liveStatus(url);
      return s.containers.length === 1 ? s : undefined;
    }, 'back to one container', 30_000);
    const actions = after.autoscaler!.decisions.filter((d) => d.action !== 'none');
    const firstIn = actions.findIndex((d) => d.action === 'scale-in');
    expect(actions[0]).toMatchObject({ action: 'scale-out', current: 0, desired: 1, reason: expect.stringContaining('below the minimum') });
    expect(actions[1]).toMatchObject({ action: 'scale-out', current: 1, reason: expect.stringMatching(/^concurrency: \d+ in flight or queued/) });
    expect(firstIn).toBeGreaterThan(1);
    // Once it started scaling in, it never scaled out again: no flapping after the load.
    expect(actions.slice(firstIn).every((d) => d.action === 'scale-in')).toBe(true);
    expect(actions.slice(firstIn).at(-1)!.reason).toMatch(/wanted within the last 4 s/);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { containerRecordSchema } from '../../status/src/schema.js';
import { useTempCluster } from '../helpers/cluster.js';
import { liveStatus, startOrchestrator, stopOrchestrator, writeInventory, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

describe('a container that crashes on start', () => {
  const cluster = useTempCluster(1);
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(() => stopOrchestrator(orchestrator));

  it('is retried with exponential back-off (0.5 s, 1 s, 2 s ...), shown in the status, and stays out of rotation', { timeout: 60_000 }, async () => {
    // The worker app refuses an invalid WORK_MS and exits at once: every replacement crashes on start.
    await writeInventory(cluster, {
      workers: 1,
      runtime: { driver: 'process' },
      template: { env: { WORK_MS: 'not-a-number' } },
      containers: [containerRecordSchema.parse({ id: `w1-${cluster.basePort}`, workerId: 'w1', host: '127.0.0.1', port: cluster.basePort, state: 'down' })],
    });

    orchestrator = await startOrchestrator(cluster.statePath, ['--restart-backoff-ms', '500', '--health-interval-ms', '200']);
    // nextRestartAt of each attempt, by attempt number, as the status shows it: attempt k sets it as it starts.
    const nextAt = new Map<number, number>();
    const deadline = Date.now() + 30_000;
    while (nextAt.size < 4) {
      expect(Date.now(), `attempts seen: ${[...nextAt.keys()].join(', ')}`).toBeLessThan(deadline);
      const c = (await liveStatus(orchestrator.url)).containers[0]!;
      expect(['down', 'starting']).toContain(c.state);
      if (c.restarts > 0 && !nextAt.has(c.restarts)) {
        // An attempt the status never showed would leave its back-off unchecked.
        if (nextAt.size > 0) expect(c.restarts, 'attempts seen one after the other').toBe(Math.max(...nextAt.keys()) + 1);
        expect(c.nextRestartAt).toEqual(expect.any(String));
        nextAt.set(c.restarts, Date.parse(c.nextRestartAt!));
      }
      // A sampling pace, not a stand-in for a condition: attempts are 0.5 s apart or more, so a read every 50 ms sees each one.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Attempt k waits for attempt k-1's nextRestartAt, and sets its own 0.5 s × 2^(k-1) later.
    const attempts = [...nextAt.keys()];
    for (const k of attempts.slice(1)) expect(nextAt.get(k)! - nextAt.get(k - 1)!, `attempt ${k - 1} to ${k}`).toBeGreaterThanOrEqual(500 * 2 ** (k - 1));
    const c = (await liveStatus(orchestrator.url)).containers[0]!;
    expect(c.history.at(-1)).toMatchObject({ state: 'down', reason: expect.stringMatching(/replacement failed: .*exited/) });
  });
});

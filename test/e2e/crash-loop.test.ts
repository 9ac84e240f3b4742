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
    // nextRestartAt of each attempt, as the status shows it.
    const nextAt = new Map<number, number>();
    const deadline = Date.now() + 9_000;
    while (Date.now() < deadline) {
      const c = (await liveStatus(orchestrator.url)).containers[0]!;
      expect(['down', 'starting']).toContain(c.state);
      if (c.restarts > 0 && c.nextRestartAt && !nextAt.has(c.restarts)) nextAt.set(c.restarts, Date.parse(c.nextRestartAt));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const attempts = [...nextAt.keys()].sort((a, b) => a - b);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    // Attempt k waits for attempt k-1's nextRestartAt, and sets its own 0.5 s × 2^(k-1) later.
    for (const k of attempts.slice(1)) {
      if (!nextAt.has(k - 1)) continue;
      expect(nextAt.get(k)! - nextAt.get(k - 1)!).toBeGreaterThanOrEqual(500 * 2 ** (k - 1));
    }
    const c = (await liveStatus(orchestrator.url)).containers[0]!;
    expect(c.history.at(-1)).toMatchObject({ state: 'down', reason: expect.stringMatching(/replacement failed: .*exited before answering \/health/) });
    // Without back-off, 9 s of 0.2 s passes would have tried far more often.
    expect(c.restarts).toBeLessThanOrEqual(6);
  });
});

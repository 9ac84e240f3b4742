import { createConnection } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runEntry } from '../helpers/cli.js';
import { TEST_PORT_STRIDE, useTempCluster } from '../helpers/cluster.js';
import { growAndShrink, MACHINE_SCALING_FLAGS } from '../helpers/machines.js';
import { cleanEnv, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

/** Whether anything accepts a connection on 127.0.0.1:`port`. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('machine autoscaling on local processes', () => {
  const cluster = useTempCluster(3);
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(() => stopOrchestrator(orchestrator));

  it('grows from 1 worker to 3 under load, every request answered, then releases back to 1 once idle', { timeout: 180_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...cluster.cliFlags, '--workers', '1', '--work-ms', '50'], {
      env: cleanEnv,
      timeoutMs: 60_000,
    });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    orchestrator = await startOrchestrator(cluster.statePath, MACHINE_SCALING_FLAGS);
    await growAndShrink(orchestrator.url, cluster.statePath, { requests: 1200, timeoutMs: 120_000 });
    // The released workers' processes are gone: nothing listens on their ports any more.
    for (const k of [2, 3]) {
      const first = cluster.basePort + (k - 1) * TEST_PORT_STRIDE;
      expect(await portOpen(first)).toBe(false);
      expect(await portOpen(first + 1)).toBe(false);
    }
  });
});

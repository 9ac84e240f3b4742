import { writeFile } from 'node:fs/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { startBackend } from '../helpers/backend.js';
import { useTempCluster } from '../helpers/cluster.js';
import { readState, startOrchestrator, useProcessRig } from '../helpers/orchestrator-process.js';
import { waitFor } from '../helpers/wait-for.js';

describe('npm start and its signals', () => {
  const cluster = useTempCluster(1);
  const rig = useProcessRig();

  /** Until the orchestrator logged that it took its first signal: it is draining. */
  const shuttingDown = (): Promise<void> =>
    waitFor(() => rig.orchestrator!.output.stdout.split('\n').some((line) => line.startsWith('{') && (JSON.parse(line) as { msg?: string }).msg?.startsWith('shutting down')), 10_000, 'the shutting-down log line');

  /** The compiled orchestrator over one container that holds every request until told to answer. */
  async function start(): Promise<{ inFlight: Promise<number> }> {
    rig.backend = await startBackend('a', { manual: true });
    await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', [{ id: 'a', port: rig.backend.port }])));
    rig.orchestrator = await startOrchestrator(cluster.statePath);
    const inFlight = request(`${rig.orchestrator.url}/new_request`, { method: 'POST', body: '{"text":"x"}' }).then(async (r) => {
      await r.body.dump();
      return r.statusCode;
    });
    await waitFor(() => rig.backend!.held === 1);
    return { inFlight };
  }

  it('takes a Ctrl-C that arrives twice at once (the terminal and npm both send it) as one: the request in flight finishes', async () => {
    const { inFlight } = await start();
    rig.orchestrator!.child.kill('SIGINT');
    rig.orchestrator!.child.kill('SIGINT');
    await shuttingDown();
    // Had the second one stopped it at once, the request would be cut and the exit code 130.
    rig.backend!.answerNext();
    expect(await inFlight).toBe(200);
    expect(await rig.orchestrator!.exited).toBe(0);
    expect((await readState(cluster.statePath)).orchestrator?.running).toBe(false);
  });

  it('stops at once, exit 130, on a second signal a person sends later', async () => {
    const { inFlight } = await start();
    rig.orchestrator!.child.kill('SIGTERM');
    await shuttingDown();
    // The pace is what is tested: a second signal counts only when it comes over a second (SAME_SIGNAL_MS) after the first.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(rig.orchestrator!.child.exitCode).toBeNull();
    // The request in flight is cut: that is what stopping at once means.
    const cut = expect(inFlight).rejects.toThrow();
    rig.orchestrator!.child.kill('SIGTERM');
    expect(await rig.orchestrator!.exited).toBe(130);
    await cut;
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { validateOptions } from '../../load/src/options.js';
import { runLoad } from '../../load/src/run-load.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';

let backends: Backend[] = [];
let running: RunningOrchestrator | undefined;
afterEach(async () => {
  await stopRig(running, backends);
  [running, backends] = [undefined, []];
});

// Against the real orchestrator: the x-served-by contract and the spread the script reports.
describe('runLoad against the orchestrator', () => {
  it('reports per container exactly what each container served', async () => {
    backends = await Promise.all(['w1-c1', 'w1-c2', 'w2-c1', 'w2-c2'].map((id) => startBackend(id, { delayMs: 5 })));
    running = await startOrchestrator(backends);
    const result = await runLoad(validateOptions({ url: `${running.url}/new_request`, requests: 200, threads: 4, concurrency: 8 }));
    expect(result).toMatchObject({ succeeded: 200, failed: 0, errors: {} });
    expect(result.servedBy).toEqual(Object.fromEntries(backends.map((b) => [b.id, b.stats.served])));
    for (const b of backends) expect(b.stats.maxInFlight).toBe(1);
  });
});

import { describe, expect, it } from 'vitest';
import { validateOptions } from '../../load/src/options.js';
import { runLoad } from '../../load/src/run-load.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';

const rig = useRig();

// Against the real orchestrator: the x-served-by contract and the spread the script reports.
describe('runLoad against the orchestrator', () => {
  it('reports per container exactly what each container served', async () => {
    rig.backends = await Promise.all(['w1-c1', 'w1-c2', 'w2-c1', 'w2-c2'].map((id) => startBackend(id, { delayMs: 5 })));
    rig.running = await startOrchestrator(rig.backends);
    const result = await runLoad(validateOptions({ url: `${rig.running.url}/new_request`, requests: 200, threads: 4, concurrency: 8 }));
    expect(result).toMatchObject({ succeeded: 200, failed: 0, errors: {} });
    expect(result.servedBy).toEqual(Object.fromEntries(rig.backends.map((b) => [b.id, b.stats.served])));
    for (const b of rig.backends) expect(b.stats.maxInFlight).toBe(1);
  });
});

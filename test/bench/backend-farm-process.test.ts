import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendFarm } from '../../bench/src/backend-farm-process.js';

let farm: BackendFarm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

const post = (port: number) => request(`http://127.0.0.1:${port}/run_model`, { method: 'POST', body: '{}' }).then((r) => r.body.text());

describe('BackendFarm', () => {
  it('answers overlapping questions each with its own reply', async () => {
    farm = new BackendFarm(2, { directSlots: 4 });
    await farm.start();
    await post(farm.ports[0]!);
    await post(farm.directPort!);
    // Asked at once: each waits for the reply before it, rather than all taking the first.
    const [before, , after] = await Promise.all([farm.snapshot(), farm.reset(5), farm.snapshot()]);
    expect(before.stats.map((s) => s.served)).toEqual([1, 0]);
    expect(before.direct).toMatchObject({ id: 'direct', served: 1 });
    expect(after.stats.map((s) => s.served)).toEqual([0, 0]);
    expect(after.direct).toMatchObject({ served: 0 });
  });

  it('has no direct backend unless asked for one', async () => {
    farm = new BackendFarm(1);
    await farm.start();
    expect(farm.directPort).toBeNull();
    expect((await farm.snapshot()).direct).toBeNull();
  });
});

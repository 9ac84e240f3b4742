import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { countStatusWrites } from '../../bench/src/status-writes.js';
import { StateStore } from '../../status/src/state-store.js';
import { emptyState } from '../../status/src/schema.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('countStatusWrites', () => {
  it('counts each write of the status store, and nothing else in its folder', async () => {
    dir = await mkdtemp(join(tmpdir(), 'status-writes-'));
    const path = join(dir, 'state.json');
    const counter = countStatusWrites(path);
    const store = new StateStore(path);
    for (let i = 0; i < 3; i++) await store.write(emptyState('c', 'provisioning'));
    await writeFile(join(dir, 'other.json'), '{}');
    await vi.waitFor(() => expect(counter.count).toBe(3));
    counter.close();
    await store.write(emptyState('c', 'provisioning'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(counter.count).toBe(3);
  });
});

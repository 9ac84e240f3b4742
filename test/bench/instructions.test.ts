import { request } from 'undici';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureValgrind, instructionsPerRequest } from '../../bench/src/instructions.js';
import { freePort } from '../../bench/src/targets.js';

let dir: string;
let running: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
  await rm(dir, { recursive: true, force: true });
});

const options = () => ({ dir, track: (r: { stop(): Promise<void> }) => void running.push(r) });

describe('instructionsPerRequest', () => {
  beforeAll(async () => {
    ensureValgrind();
  }, 300_000);

  it("counts a real server's instructions per request under callgrind, then stops it", async () => {
    dir = await mkdtemp(join(tmpdir(), 'instructions-test-'));
    const port = await freePort();
    const command = [process.execPath, '--import', 'tsx', 'bench/src/node-floor.ts', 'floor-server', String(port)];
    const perRequest = await instructionsPerRequest({ target: 'floor-server', command, port, path: '/run_model', warmUp: 100, counted: 200 }, options());
    // Node's HTTP server takes tens of thousands of instructions per request: not zero, not the process's start-up.
    expect(perRequest).toBeGreaterThan(10_000);
    expect(perRequest).toBeLessThan(2_000_000);
    // Stopped: nothing answers on its port any more.
    await expect(request(`http://127.0.0.1:${port}/run_model`)).rejects.toThrow();
  }, 240_000);

  it('says so when the process exits instead of serving', async () => {
    dir = await mkdtemp(join(tmpdir(), 'instructions-test-'));
    const command = [process.execPath, '-e', 'process.exit(3)'];
    await expect(instructionsPerRequest({ target: 'quitter', command, port: await freePort(), path: '/', warmUp: 1, counted: 1 }, options())).rejects.toThrow(/quitter exited under valgrind/);
  }, 120_000);
});

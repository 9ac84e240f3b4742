import { readFile } from 'node:fs/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { stateFileSchema } from '../../status/src/schema.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

const post = async (url: string): Promise<number> => {
  const response = await request(`${url}/new_request`, { method: 'POST', body: '{"text":"x"}' });
  await response.body.dump();
  return response.statusCode;
};

describe('the status file', () => {
  it('is valid JSON at every read under load, written far less often than requests arrive', async () => {
    rig.backends = await Promise.all(['a', 'b'].map((id) => startBackend(id, { delayMs: 3 })));
    rig.running = await startOrchestrator(rig.backends, { statusWriteIntervalMs: 20 });
    let reading = true;
    let reads = 0;
    const reader = (async () => {
      while (reading) {
        const text = await readFile(rig.running!.statePath, 'utf8');
        stateFileSchema.parse(JSON.parse(text));
        reads++;
      }
    })();
    const writesBefore = rig.running.orchestrator.publisher.writes;
    const statuses = await Promise.all(Array.from({ length: 400 }, () => post(rig.running!.url)));
    reading = false;
    await reader;
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(reads).toBeGreaterThan(10);
    const writes = rig.running.orchestrator.publisher.writes - writesBefore;
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThan(400 / 4);
  });

  it('agrees with GET /status once writes have caught up', async () => {
    rig.backends = await Promise.all(['a', 'b'].map((id) => startBackend(id)));
    rig.running = await startOrchestrator(rig.backends);
    await Promise.all(Array.from({ length: 20 }, () => post(rig.running!.url)));
    const live = (await (await request(`${rig.running.url}/status`)).body.json()) as Record<string, unknown>;
    const strip = (s: Record<string, unknown>) => ({ ...s, updatedAt: undefined });
    // The publisher writes at most every 50 ms, once something changed: read until it has caught up.
    await expect.poll(async () => strip(JSON.parse(await readFile(rig.running!.statePath, 'utf8')) as Record<string, unknown>), { timeout: 5_000, interval: 20 }).toEqual(strip(live));
    expect(live).toMatchObject({
      cluster: 'test',
      writer: 'orchestrator',
      queue: { length: 0, capacity: 1000 },
      counters: { accepted: 20, completed: 20, failed: 0 },
      orchestrator: { pid: process.pid, running: true },
    });
    const containers = live.containers as Array<{ state: string; served: number }>;
    expect(containers.map((c) => c.state)).toEqual(['free', 'free']);
    expect(containers.reduce((n, c) => n + c.served, 0)).toBe(20);
  });
});

describe('graceful shutdown', () => {
  it('finishes running and queued requests, refuses new ones, and records the stop', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends);
    const accepted = [post(rig.running.url), post(rig.running.url), post(rig.running.url)];
    await waitFor(() => only.held === 1 && rig.running!.orchestrator.queue.length === 2);
    const closing = rig.running.orchestrator.close();
    const answering = (async () => {
      for (let i = 0; i < 3; i++) {
        await waitFor(() => only.held === 1);
        only.answerNext();
      }
    })();
    expect(await Promise.all(accepted)).toEqual([200, 200, 200]);
    await answering;
    await closing;
    const file = stateFileSchema.parse(JSON.parse(await readFile(rig.running.statePath, 'utf8')));
    expect(file.orchestrator?.running).toBe(false);
    expect(file.counters).toMatchObject({ accepted: 3, completed: 3 });
    await expect(post(rig.running.url)).rejects.toThrow();
  });
});

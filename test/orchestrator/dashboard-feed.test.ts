import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

/** The server-sent events read from `body` so far, and when the stream ended. */
function collectEvents(body: NodeJS.ReadableStream): { events: Array<{ event: string; data: unknown }>; ended: Promise<void> } {
  const events: Array<{ event: string; data: unknown }> = [];
  let pending = '';
  body.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let end: number;
    while ((end = pending.indexOf('\n\n')) !== -1) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) });
    }
  });
  return { events, ended: new Promise((resolve, reject) => body.once('end', resolve).once('error', reject)) };
}

describe('the dashboard feed', () => {
  it('serves the page, then streams the recent history and a sample every second, and ends the stream at shutdown', async () => {
    rig.backends = await Promise.all(['a', 'b'].map((id) => startBackend(id)));
    rig.running = await startOrchestrator(rig.backends);
    const page = await request(`${rig.running.url}/dashboard`);
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(await page.body.text()).toContain('<title>Inference cluster</title>');

    const stream = await request(`${rig.running.url}/dashboard/events`);
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const started = performance.now();
    const { events, ended } = collectEvents(stream.body);
    await waitFor(() => events.length >= 2, 3_000);
    const [history, sample] = events;
    expect(history!.event).toBe('history');
    const { latest } = history!.data as { series: unknown[]; latest: { containers: Array<{ id: string; state: string }> } };
    expect(latest.containers.map((c) => [c.id, c.state])).toEqual([['a', 'free'], ['b', 'free']]);
    expect(sample!.event).toBe('sample');
    expect(sample!.data).toMatchObject({ cluster: 'test', queue: { length: 0 }, workers: [{ id: 'w1' }] });
    // One a second, not faster.
    expect(performance.now() - started).toBeGreaterThan(500);
    expect(rig.running.orchestrator.dashboard.viewers).toBe(1);

    await rig.running.close();
    await ended;
    rig.running = undefined;
  });
});

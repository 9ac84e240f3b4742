import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DashboardFeed, type DashboardFeedOptions } from '../../orchestrator/src/dashboard-feed.js';
import { TooManyViewersError } from '../../orchestrator/src/errors.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { emptyState } from '../../status/src/schema.js';
import { startBackend } from '../helpers/backend.js';
import { capturingLogger } from '../helpers/captured-log.js';
import { useTempCluster } from '../helpers/cluster.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { startOrchestrator as startOrchestratorProcess, stopOrchestrator, useProcessRig } from '../helpers/orchestrator-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { machineCluster, machineClusterView, machineSnapshot } from '../helpers/machine-view.js';
import type { MachineScalerSnapshot } from '../../status/src/schema.js';

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

/** A raw connection that asked for the event stream; resolves once the history event arrived. `samples()` counts the sample events read since. */
function openStream(port: number): Promise<{ socket: Socket; samples: () => number }> {
  const marker = 'event: sample\n';
  return new Promise((resolve, reject) => {
    let tail = '';
    let history = false;
    let samples = 0;
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /dashboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      // Only the end of the previous chunk is kept, so a marker cut in two is still found, and counting stays cheap.
      const text = tail + chunk.toString('latin1');
      samples += text.split(marker).length - 1;
      tail = text.slice(-(marker.length - 1));
      if (!history && text.includes('event: history')) {
        history = true;
        resolve({ socket, samples: () => samples });
      }
    });
  });
}

/** Dropped-stream lines one by one, and the streams counted by the once-a-second summaries. */
function droppedStreams(entries: Array<Record<string, unknown>>): { oneByOne: Array<Record<string, unknown>>; counted: number } {
  const oneByOne = entries.filter((e) => e.msg === 'dashboard stream dropped');
  const counted = entries
    .filter((e) => e.msg === 'more dashboard streams dropped than logged one by one')
    .reduce((sum, e) => sum + Object.values(e.rejected as Record<string, number>).reduce((a, b) => a + b, 0), 0);
  return { oneByOne, counted };
}

describe('DashboardFeed, on a real HTTP server', () => {
  const servers: Server[] = [];
  const feeds: DashboardFeed[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(feeds.splice(0).map((f) => f.stop()));
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
    vi.useRealTimers();
  });

  /** A feed over a fixed cluster named `cluster` (a long name makes big samples), served on 127.0.0.1:0; a refusal is recorded and answered 503. */
  async function serveFeed(options: Partial<DashboardFeedOptions> & { cluster?: string } = {}) {
    const { log, entries } = capturingLogger();
    const state = emptyState(options.cluster ?? 'unit', 'orchestrator');
    const feed = new DashboardFeed({ sources: { status: () => state, completed: () => 0, latencies: (ps) => ps.map(() => null) }, log }, { intervalMs: 1_000, maxViewers: 100, ...options });
    feeds.push(feed);
    const refusals: Array<{ error: unknown; headersSent: boolean }> = [];
    const server = createServer((_req, res) => {
      try {
        feed.subscribe(res);
      } catch (error) {
        refusals.push({ error, headersSent: res.headersSent });
        res.writeHead(503).end();
      }
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const open = async () => {
      const stream = await openStream(port);
      sockets.push(stream.socket);
      return stream;
    };
    return { feed, entries, refusals, port, open };
  }

  it('refuses the stream past maxViewers with TOO_MANY_VIEWERS before writing anything, and takes one again once a viewer left', async () => {
    const { feed, refusals, port, open } = await serveFeed({ maxViewers: 2 });
    const [first] = [await open(), await open()];
    expect(feed.viewers).toBe(2);

    const refused = await request(`http://127.0.0.1:${port}/dashboard/events`);
    expect(refused.statusCode).toBe(503);
    await refused.body.dump();
    expect(refusals).toHaveLength(1);
    expect(refusals[0]!.error).toBeInstanceOf(TooManyViewersError);
    expect(refusals[0]!.error).toMatchObject({ code: 'TOO_MANY_VIEWERS', status: 503, expose: true });
    // Nothing written: the caller's error path can still answer.
    expect(refusals[0]!.headersSent).toBe(false);
    expect(feed.viewers).toBe(2);

    first!.socket.destroy();
    await waitFor(() => feed.viewers === 1);
    await open();
    expect(feed.viewers).toBe(2);
    expect(refusals).toHaveLength(1);
  });

  it('closes a viewer that stops reading once maxUnsentBytes wait for it, and keeps serving one that reads', async () => {
    // About 256 KiB a sample, so the kernel's socket buffers fill within a few dozen samples.
    const { feed, entries, open } = await serveFeed({ cluster: 'x'.repeat(256 * 1024), maxUnsentBytes: 1024 * 1024 });
    const reader = await open();
    const stalled = await open();
    stalled.socket.pause();
    let samples = 0;
    // 64 MiB of samples in all: far more than the loopback buffers and the bound together.
    for (let tick = 0; tick < 256 && feed.viewers === 2; tick++) {
      await feed.tick();
      samples++;
      await waitFor(() => reader.samples() === samples);
    }
    expect(feed.viewers).toBe(1);
    expect(entries()).toContainEqual(expect.objectContaining({ msg: 'dashboard stream dropped', error: 'SLOW_VIEWER', status: 499, viewers: 1 }));
    // The reader still gets every sample.
    await feed.tick();
    await waitFor(() => reader.samples() === samples + 1);
    expect(reader.socket.destroyed).toBe(false);
  });

  it('logs each dropped stream once, as JSON, a few one by one and the rest counted once a second', async () => {
    // Only Date is frozen (the log's one-second window); sockets and timers run for real.
    vi.useFakeTimers({ toFake: ['Date'] });
    const { feed, entries, open } = await serveFeed();
    const streams = await Promise.all(Array.from({ length: 30 }, () => open()));
    expect(feed.viewers).toBe(30);
    for (const s of streams) s.socket.resetAndDestroy();
    await waitFor(() => feed.viewers === 0);
    await feed.stop();

    const { oneByOne, counted } = droppedStreams(entries());
    expect(oneByOne).toHaveLength(5);
    for (const line of oneByOne) expect(line).toMatchObject({ level: 30, path: '/dashboard/events', status: 499, error: 'ECONNRESET', remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(new Set(oneByOne.map((l) => l.remote)).size).toBe(5);
    // Every stream counted exactly once.
    expect(oneByOne.length + counted).toBe(30);
  });
});

describe('the machine autoscaler in the dashboard feed', () => {
  /** A feed over a cluster view whose machine autoscaler reports `current.snapshot`. */
  function machineFeed(snapshot: MachineScalerSnapshot | null) {
    const current = { snapshot };
    const feed = new DashboardFeed({ sources: machineClusterView(machineCluster(), () => current.snapshot), log: capturingLogger().log }, { intervalMs: 1_000, maxViewers: 1 });
    return { current, feed };
  }

  it('carries each worker with its state and who launched it, the workers launching and releasing, the back-off and its error, the latest decisions and the last launch', () => {
    const snapshot = machineSnapshot();
    const sample = machineFeed(snapshot).feed.sample();
    expect(sample.workers).toEqual([
      { id: 'w1', host: '127.0.0.1', state: 'draining', launchedBy: 'provisioning' },
      { id: 'w2', host: '127.0.0.1', state: 'up', launchedBy: 'autoscaler' },
    ]);
    expect(sample.machines).toEqual({
      provider: 'process',
      paused: false,
      minWorkers: 1,
      maxWorkers: 4,
      launching: [{ workerId: 'w3', since: snapshot.launching[0]!.since, reason: '2 containers fit on no worker' }],
      releasing: [{ workerId: 'w1', since: snapshot.releasing[0]!.since, reason: 'its containers surplus for 60 s' }],
      failures: 2,
      backoffUntil: snapshot.backoffUntil,
      lastError: 'spawn ENOENT: worker binary missing',
      counts: { launched: 3, launchFailed: 2, adopted: 1, released: 5, releaseFailed: 0 },
      decisions: snapshot.decisions,
      lastLaunch: snapshot.launches[1],
    });
  });

  it('keeps the 15 latest decisions, and has no machines without a machine autoscaler', () => {
    const decisions = Array.from({ length: 40 }, (_, i) => ({ at: new Date(i * 1000).toISOString(), action: 'held' as const, workerId: null, workers: 4, reason: `at maxWorkers ${i}` }));
    const { current, feed } = machineFeed(machineSnapshot(Date.now(), { decisions }));
    expect(feed.sample().machines!.decisions.map((d) => d.reason)).toEqual(decisions.slice(-15).map((d) => d.reason));
    current.snapshot = null;
    expect(feed.sample().machines).toBeNull();
  });
});

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

describe('the dashboard stream bound, through the orchestrator', () => {
  it('answers the stream past maxDashboardViewers with 503 TOO_MANY_VIEWERS as JSON with Retry-After, and serves one again once a viewer left', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { maxDashboardViewers: 2 });
    const { port } = new URL(rig.running.url);
    const held = [await openStream(Number(port)), await openStream(Number(port))];
    try {
      const refused = await request(`${rig.running.url}/dashboard/events`, { headers: { 'x-request-id': 'viewer-3' }, headersTimeout: 5_000 });
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(await refused.body.json()).toEqual({ error: 'TOO_MANY_VIEWERS', message: expect.any(String), requestId: 'viewer-3' });
      expect(rig.running.orchestrator.dashboard.viewers).toBe(2);

      held[0]!.socket.destroy();
      await waitFor(() => rig.running!.orchestrator.dashboard.viewers === 1);
      const again = await request(`${rig.running.url}/dashboard/events`);
      expect(again.statusCode).toBe(200);
      expect(again.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      again.body.destroy();
    } finally {
      for (const h of held) h.socket.destroy();
    }
  });
});

describe('dropped dashboard streams, in the compiled orchestrator', () => {
  const cluster = useTempCluster(1);
  const rig = useProcessRig();

  it('logs a flood of streams cut by their clients as JSON lines only, rate-limited, each stream counted once, and nothing on stderr', async () => {
    rig.backend = await startBackend('a');
    await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', [{ id: 'a', port: rig.backend.port }])));
    rig.orchestrator = await startOrchestratorProcess(cluster.statePath);
    const running = rig.orchestrator;
    const port = Number(new URL(running.url).port);
    // As many as the default bound allows.
    const streams = await Promise.all(Array.from({ length: 100 }, () => openStream(port)));
    for (const s of streams) s.socket.resetAndDestroy();

    const entries = () => running.output.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const logged = () => {
      const { oneByOne, counted } = droppedStreams(entries());
      return oneByOne.length + counted;
    };
    // The rest are counted by the summary, at most a second later.
    await waitFor(() => logged() === 100, 5_000, 'every dropped stream logged or counted');
    await stopOrchestrator(running);

    expect(running.output.stderr).toBe('');
    for (const line of running.output.stdout.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    const { oneByOne } = droppedStreams(entries());
    // 5 a second; the burst of resets lasts well under a second, so it spans at most two of the log's windows.
    expect(oneByOne.length).toBeGreaterThanOrEqual(5);
    expect(oneByOne.length).toBeLessThanOrEqual(10);
    expect(new Set(oneByOne.map((l) => l.remote)).size).toBe(oneByOne.length);
    expect(logged()).toBe(100);
  });
});

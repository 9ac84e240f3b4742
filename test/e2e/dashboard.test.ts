import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { ensureChromium, launchChromium } from '../helpers/browser.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { capturingLogger } from '../helpers/captured-log.js';
import { TEST_PORT_STRIDE, useTempCluster } from '../helpers/cluster.js';
import { machineCluster, machineClusterView, machineSnapshot, squat, startMachineOrchestrator } from '../helpers/machine-view.js';
import type { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { DashboardFeed } from '../../orchestrator/src/dashboard-feed.js';
import { keyHash } from '../../orchestrator/src/access-control.js';
import type { MachineScalerSnapshot } from '../../status/src/schema.js';

let browser: Browser | undefined;
let page: Page | undefined;
let shots: string | undefined;

beforeAll(async () => {
  await ensureChromium();
  browser = await launchChromium();
  shots = await mkdtemp(join(tmpdir(), 'dashboard-'));
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (shots) await rm(shots, { recursive: true, force: true });
});

const rig = useRig();
afterEach(async () => {
  await page?.close();
  page = undefined;
});

const post = () => request(`${rig.running!.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"hi"}' });

/** `clients` clients posting one request after another for `ms`. */
async function steadyLoad(ms: number, clients: number): Promise<void> {
  const until = Date.now() + ms;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) await (await post()).body.dump();
    }),
  );
}

/** The state a container's tile shows. */
const tileState = (id: string) => page!.locator(`[data-container="${id}"]`).getAttribute('data-state');

describe('the live dashboard, in a real headless Chromium', () => {
  it('shows every container, one turning busy under load and one turning unhealthy after a crash, with no page errors', { timeout: 90_000 }, async () => {
    // Six containers that answer in 20 ms, two held busy by the test.
    const quick = await Promise.all(['m1', 'm2', 'm3', 'm4', 'm5', 'm6'].map((id) => startBackend(id, { delayMs: 20 })));
    const held = await Promise.all(['m7', 'm8'].map((id) => startBackend(id, { manual: true })));
    rig.backends = [...quick, ...held];
    rig.running = await startOrchestrator(rig.backends, { healthFall: 2 });
    page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });

    await page.goto(`${rig.running.url}/dashboard`);
    await expect.poll(() => page!.locator('[data-container]').count(), { timeout: 10_000 }).toBe(8);
    for (const b of rig.backends) expect(await tileState(b.id)).toBe('free');
    await expect.poll(() => page!.locator('#connection').textContent()).toBe('live');
    // Opening the dashboard sends nothing to the model (a browser's own /favicon.ico would be forwarded).
    expect(rig.backends.map((b) => b.stats.last?.url).filter(Boolean)).toEqual([]);

    // For the README's screenshot: half a minute of steady traffic first, so the charts have a history.
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      const answerHeld = setInterval(() => held.forEach((b) => b.answerNext()), 25);
      await steadyLoad(30_000, 10);
      clearInterval(answerHeld);
    }
    // Traffic for the charts, then every container busy at once: the held ones stay busy.
    let answered = 0;
    const load = Array.from({ length: 60 }, () => post().then((r) => r.body.dump().then(() => answered++)));
    await expect.poll(() => held.every((b) => b.held === 1), { timeout: 10_000 }).toBe(true);
    for (const b of held) await expect.poll(() => tileState(b.id), { timeout: 5_000 }).toBe('busy');
    // All but the two the held containers keep.
    await expect.poll(() => answered, { timeout: 10_000 }).toBe(58);
    await expect.poll(async () => Number(await page!.locator('#rps').textContent()), { timeout: 5_000 }).toBeGreaterThan(0);

    // A crashed container: its tile turns unhealthy and the event list says why.
    await quick[0]!.kill();
    await expect.poll(() => tileState('m1'), { timeout: 10_000 }).toBe('unhealthy');
    await expect.poll(() => page!.locator('#events').textContent(), { timeout: 5_000 }).toMatch(/m1 unhealthy/);

    const shot = join(shots!, 'dashboard.png');
    await page.screenshot({ path: shot });
    expect((await readFile(shot)).subarray(1, 4).toString()).toBe('PNG');
    if (process.env.UPDATE_SCREENSHOTS === '1') await copyFile(shot, join(REPO_ROOT, 'docs/dashboard.png'));

    for (const b of held) while (b.held > 0) b.answerNext();
    await Promise.allSettled(load);
    expect(pageErrors).toEqual([]);
  });

  it('asks again for a stream refused with 503 (maxDashboardViewers open) and goes live once a viewer left', { timeout: 60_000 }, async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { maxDashboardViewers: 1 });
    const held = await request(`${rig.running.url}/dashboard/events`);
    expect(held.statusCode).toBe(200);
    page = await browser!.newPage();
    await page.goto(`${rig.running.url}/dashboard`);
    // The browser gives up on an EventSource answered 503; the page must ask again by itself.
    await expect.poll(() => page!.locator('#connection').textContent(), { timeout: 10_000 }).toMatch(/retrying/);
    held.body.destroy();
    await expect.poll(() => rig.running!.orchestrator.dashboard.viewers, { timeout: 5_000 }).toBe(0);
    await expect.poll(() => page!.locator('#connection').textContent(), { timeout: 20_000 }).toBe('live');
    expect(rig.running.orchestrator.dashboard.viewers).toBe(1);
  });

  it('asks for the read key: without it the page is 401; with it as the Basic password the page and its live stream work', { timeout: 60_000 }, async () => {
    const key = 'orch_dashboard-read-key-0123456789abcdef';
    const held = await startBackend('held', { manual: true });
    rig.backends = [held];
    rig.running = await startOrchestrator(rig.backends, { clientKeys: [{ name: 'viewer', sha256: keyHash(key), scopes: ['read'] }] });
    page = await browser!.newPage();
    const answered: number[] = [];
    page.on('response', (r) => answered.push(r.status()));
    // A browser with no password to give answers the challenge by giving up on the page.
    await expect(page.goto(`${rig.running.url}/dashboard`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    expect(answered).toEqual([401]);
    await page.close();
    const context = await browser!.newContext({ httpCredentials: { username: 'viewer', password: key } });
    try {
      page = await context.newPage();
      expect((await page.goto(`${rig.running.url}/dashboard`))?.status()).toBe(200);
      await expect.poll(() => page!.locator('#connection').textContent(), { timeout: 10_000 }).toBe('live');
      expect(await tileState('held')).toBe('free');
      // A request held by the container shows on the page: the stream delivers, not just the first sample.
      const pending = post();
      await expect.poll(() => tileState('held'), { timeout: 10_000 }).toBe('busy');
      held.answerNext();
      await (await pending).body.dump();
      await expect.poll(() => tileState('held'), { timeout: 10_000 }).toBe('free');
      expect(rig.running.orchestrator.dashboard.viewers).toBe(1);
    } finally {
      await context.close();
      page = undefined;
    }
  });

  it('stays readable with 100 containers: every tile drawn, none wider than its column', async () => {
    rig.backends = await Promise.all(Array.from({ length: 100 }, (_, i) => startBackend(`c${String(i + 1).padStart(3, '0')}`)));
    rig.running = await startOrchestrator(rig.backends);
    page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${rig.running.url}/dashboard`);
    await expect.poll(() => page!.locator('[data-container]').count(), { timeout: 10_000 }).toBe(100);
    const widths = await page.locator('[data-container]').evaluateAll((tiles) => tiles.map((t) => t.getBoundingClientRect().width));
    expect(Math.max(...widths)).toBeLessThan(200);
    // The page does not scroll sideways.
    expect(await page.locator('html').evaluate((html) => html.scrollWidth <= html.clientWidth)).toBe(true);
  });
});

/** The Machines panel's worker rows: id, state shown, launched by, containers, and the reason under a pending one. */
const machineRows = () =>
  page!.locator('#machine-workers tr[data-machine]').evaluateAll((rows) =>
    rows.map((r) => ({
      id: r.getAttribute('data-machine'),
      state: r.getAttribute('data-state'),
      cells: [...r.querySelectorAll('td')].map((td) => td.textContent),
      why: r.nextElementSibling?.classList.contains('why') ? r.nextElementSibling.textContent!.trim() : null,
    })),
  );

/** The Machines panel's decisions, newest first: the action, and the whole line after the time. */
const machineDecisions = () =>
  page!.locator('#machine-decisions li').evaluateAll((items) =>
    items.map((li) => ({ action: li.querySelector('b')?.textContent, line: [...li.childNodes].filter((n) => n.nodeName !== 'TIME').map((n) => n.textContent).join('') })),
  );

describe('the Machines panel, in a real headless Chromium', () => {
  let server: Server | undefined;
  let feed: DashboardFeed | undefined;
  afterEach(async () => {
    await feed?.stop();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = feed = undefined;
  });

  /**
   * The page and a feed over a cluster view whose machine autoscaler reports `current.read()`,
   * served as the orchestrator serves them (until an orchestrator with a machine autoscaler can be
   * started here, this is how its state reaches the page). Samples go out when the test ticks the feed.
   */
  async function serveMachines(read: () => MachineScalerSnapshot | null) {
    const current = { read };
    const html = await readFile(join(REPO_ROOT, 'orchestrator/dashboard/index.html'), 'utf8');
    const running = new DashboardFeed({ sources: machineClusterView(machineCluster(), () => current.read()), log: capturingLogger().log }, { intervalMs: 1_000, maxViewers: 5 });
    feed = running;
    server = createServer((req, res) => {
      if (req.url === '/dashboard/events') running.subscribe(res);
      else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return { current, feed: running, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard` };
  }

  it('shows the workers and who launched them, those launching and releasing with why, the back-off with its error, the last launch and the decisions', { timeout: 30_000 }, async () => {
    // Made afresh at each read, so the times shown do not depend on how long the browser took.
    const served = await serveMachines(() => machineSnapshot());
    page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(served.url);
    await expect.poll(() => page!.locator('#machines-summary').textContent(), { timeout: 10_000 }).toBe('process, 1 to 4 workers; launched 3, failed 2, adopted 1, released 5');
    expect(await machineRows()).toEqual([
      { id: 'w1', state: 'releasing', cells: ['w1', 'draining · releasing for 2 s', 'provisioning', '1'], why: 'its containers surplus for 60 s' },
      { id: 'w2', state: 'up', cells: ['w2', 'up', 'autoscaler', '2'], why: null },
      { id: 'w3', state: 'launching', cells: ['w3', 'launching for 4 s', 'autoscaler', '0'], why: '2 containers fit on no worker' },
    ]);
    expect(await page.locator('#machine-backoff').isVisible()).toBe(true);
    // 30 s from the snapshot, which the view reads a moment after the sample's time, rounded up.
    expect(await page.locator('#machine-backoff').textContent()).toMatch(/^2 launches failed in a row, next try in 3[01] s$/);
    expect(await page.locator('#machine-error').textContent()).toBe('last error: spawn ENOENT: worker binary missing');
    expect(await page.locator('#machine-last-launch').textContent()).toBe('last launch w2: decision 1.5 s · launch 2.3 s · start 3.0 s · probe 0.1 s');
    const decisions = await machineDecisions();
    expect(decisions).toHaveLength(5);
    // Newest first.
    expect(decisions[0]!.line).toBe('release w1 (3 workers): its containers surplus for 60 s');
    expect(decisions[2]!.line).toBe('launch-failed w4 (2 workers): spawn ENOENT: worker binary missing');
    // The worker's own heading says it is draining.
    expect(await page.locator('[data-worker="w1"] h3').textContent()).toMatch(/^w1 · DRAINING · 1 containers/);

    // The back-off over and no error: their lines go; no machine autoscaler: the panel says so.
    served.current.read = () => machineSnapshot(Date.now(), { failures: 0, backoffUntil: null, lastError: null });
    await served.feed.tick();
    await expect.poll(() => page!.locator('#machine-backoff').isVisible(), { timeout: 5_000 }).toBe(false);
    expect(await page.locator('#machine-error').isVisible()).toBe(false);
    served.current.read = () => null;
    await served.feed.tick();
    await expect.poll(() => page!.locator('#machines-summary').textContent(), { timeout: 5_000 }).toBe('no machine autoscaler');
    expect(await page.locator('#machines-detail').isVisible()).toBe(false);
    expect(pageErrors).toEqual([]);
  });

  it('inserts worker ids, reasons and errors as text: markup in them shows as written and never runs', { timeout: 30_000 }, async () => {
    const payload = (n: number) => `<img src=x onerror="window.__injected=${n}"><script>window.__injected=${n}</script>`;
    const served = await serveMachines(() =>
      machineSnapshot(Date.now(), {
        lastError: payload(1),
        launching: [{ workerId: payload(2), since: new Date().toISOString(), reason: payload(3) }],
        decisions: [{ at: new Date().toISOString(), action: 'launch-failed', workerId: payload(4), workers: 1, reason: payload(5) }],
      }),
    );
    page = await browser!.newPage();
    await page.goto(served.url);
    await expect.poll(() => page!.locator('#machine-decisions li').count(), { timeout: 10_000 }).toBe(1);
    // Give an injected image time to fail loading and fire onerror.
    await page.waitForTimeout(300);
    expect(await page.evaluate(() => (globalThis as { __injected?: number }).__injected)).toBeUndefined();
    expect(await page.locator('#machines img, #machines script').count()).toBe(0);
    expect(await page.locator('#machine-error').textContent()).toBe(`last error: ${payload(1)}`);
    expect((await machineDecisions())[0]!.line).toBe(`launch-failed ${payload(4)} (1 worker): ${payload(5)}`);
    expect((await machineRows()).find((r) => r.state === 'launching')).toMatchObject({ id: payload(2), why: payload(3) });
  });
});

describe('the Machines panel of an orchestrator that launches and releases workers (real worker processes), in a real headless Chromium', () => {
  const cluster = useTempCluster(2);
  let orchestrator: Orchestrator | undefined;
  let squatter: Awaited<ReturnType<typeof squat>> | undefined;
  afterEach(async () => {
    await orchestrator?.close();
    orchestrator = undefined;
    squatter?.close();
    squatter = undefined;
  });

  it('shows a failed launch backing off with its error, then the worker launched, in rotation and released again, each decision with its reason', { timeout: 90_000 }, async () => {
    // w2's first port is taken, as by another program: its first launch fails.
    const taken = cluster.basePort + TEST_PORT_STRIDE;
    squatter = await squat(taken);
    const started = await startMachineOrchestrator(cluster, { workerLaunchBackoffMs: 4_000, workerLaunchBackoffMaxMs: 4_000 });
    orchestrator = started.orchestrator;
    page = await browser!.newPage({ viewport: { width: 1280, height: 860 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${started.url}/dashboard`);
    await expect.poll(() => page!.locator('#machines-summary').textContent(), { timeout: 10_000 }).toBe('process, 1 to 2 workers; launched 0, failed 0, adopted 0, released 0');
    expect(await machineRows()).toEqual([{ id: 'w1', state: 'up', cells: ['w1', 'up', 'provisioning', '2'], why: null }]);
    expect(await page.locator('#machine-last-launch').textContent()).toBe('no launch yet');

    // Four containers: w1 holds its two already, so the other two need a worker.
    orchestrator.autoscaler.scaleTo(4, 'test');
    await expect.poll(() => page!.locator('#machine-backoff').textContent(), { timeout: 15_000 }).toMatch(/^1 launch failed in a row, next try in \d s$/);
    expect(await page.locator('#machine-error').textContent()).toMatch(/^last error: .*in use/);
    expect(await page.locator('#machine-error').getAttribute('class')).toContain('alert');
    expect(await page.locator('#machine-decisions').textContent()).toMatch(/launch-failed w2/);
    squatter.close();
    squatter = undefined;

    await expect.poll(async () => (await machineRows()).find((r) => r.id === 'w2')?.cells, { timeout: 30_000 }).toEqual(['w2', 'up', 'autoscaler', '2']);
    await expect.poll(() => page!.locator('#machine-backoff').isVisible(), { timeout: 5_000 }).toBe(false);
    // The error stays to be read, no longer in red.
    expect(await page.locator('#machine-error').getAttribute('class')).not.toContain('alert');
    expect(await page.locator('#machine-last-launch').textContent()).toMatch(/^last launch w2: decision \d+\.\d s · launch \d+\.\d s · start \d+\.\d s · probe \d+\.\d s$/);
    const grown = await machineDecisions();
    expect(grown.find((d) => d.action === 'launch')?.line).toMatch(/^launch w2 \(1 worker\): .*fit on no worker/);
    expect(grown.find((d) => d.action === 'launched')?.line).toMatch(/^launched w2 /);
    expect(await page.locator('[data-worker="w2"] [data-container]').count()).toBe(2);

    // Back to two containers: w2 is surplus, drained and released.
    orchestrator.autoscaler.scaleTo(2, 'test');
    await expect.poll(async () => (await machineRows()).map((r) => r.id), { timeout: 30_000 }).toEqual(['w1']);
    const shrunk = await machineDecisions();
    expect(shrunk.find((d) => d.action === 'release')?.line).toMatch(/^release w2 \(2 workers\): surplus/);
    expect(shrunk.find((d) => d.action === 'released')?.line).toMatch(/^released w2 /);
    await expect.poll(() => page!.locator('#machines-summary').textContent(), { timeout: 5_000 }).toMatch(/; launched 1, failed 1, adopted 0, released 1$/);
    expect(pageErrors).toEqual([]);
  });
});

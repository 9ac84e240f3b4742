import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { ensureChromium, launchChromium } from '../helpers/browser.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';

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

import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parseExposition } from '../../common/src/prometheus-text.js';
import { REPO_ROOT } from '../../common/src/paths.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();
const SRC = join(REPO_ROOT, 'orchestrator/src');

/** Every module `file` reaches through its relative imports (type-only ones included), as paths relative to orchestrator/src. */
function reachable(file: string, seen = new Set<string>()): Set<string> {
  for (const { fileName } of ts.preProcessFile(readFileSync(file, 'utf8'), true, false).importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const target = resolve(dirname(file), fileName.replace(/\.js$/, '.ts'));
    const name = relative(SRC, target);
    if (seen.has(name)) continue;
    seen.add(name);
    reachable(target, seen);
  }
  return seen;
}

/** The request path: what handles a client's request, from the listener to the container's socket. */
const REQUEST_PATH = /^(app|proxy-handler|request-queue|error-responder|upstream\/.*)\.ts$/;

describe('the cluster view (read model)', () => {
  it.each(['metrics.ts', 'status-publisher.ts', 'dashboard-feed.ts', 'cluster-view.ts'])('is what %s reads: it reaches no module of the request path', (observer) => {
    const reached = reachable(join(SRC, observer));
    expect([...reached].filter((m) => REQUEST_PATH.test(m))).toEqual([]);
    // The scan itself works: the view reaches the request stats the proxy writes.
    if (observer === 'cluster-view.ts') expect(reached).toContain('request-stats.ts');
  });

  it('gives /status, /metrics and the dashboard the same counts, and /health none', async () => {
    const backend = await startBackend('b1', { manual: true });
    rig.backends = [backend];
    rig.running = await startOrchestrator(rig.backends, { maxQueue: 0 });
    const { url, orchestrator } = rig.running;
    const post = () => fetch(`${url}/new_request`, { method: 'POST', body: '{}' });

    const held = post();
    await waitFor(() => backend.held === 1);
    const refused = await post();
    expect(refused.status).toBe(503);
    await refused.arrayBuffer();
    backend.answerNext();
    await (await held).arrayBuffer();
    await waitFor(() => orchestrator.stats.active === 0);

    const status = (await (await fetch(`${url}/status`)).json()) as { counters: Record<string, number>; containers: Array<{ id: string; served: number }> };
    expect(status.counters).toMatchObject({ accepted: 2, completed: 1, rejected: 1 });
    expect(status.counters).toMatchObject(orchestrator.stats.counters);
    const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
    expect(metrics.sum('orchestrator_queue_rejected_total', {})).toBe(status.counters.rejected);
    expect(metrics.sum('orchestrator_requests_total', { route: '/new_request', status: '200' })).toBe(status.counters.completed);
    // /health, open to anyone, says only whether requests can be served.
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
    const sample = orchestrator.dashboard.sample();
    expect(sample.containers.map((c) => [c.id, c.served])).toEqual(status.containers.map((c) => [c.id, c.served]));
  });
});

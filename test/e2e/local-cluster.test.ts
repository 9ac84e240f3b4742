import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import { runEntry } from '../helpers/cli.js';
import { useTempCluster } from '../helpers/cluster.js';
import { poll } from '../helpers/docker.js';
import { cleanEnv as env, containerHealth, liveStatus, readState, startOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';
import { pidsGone } from '../helpers/processes.js';

describe('the whole path on the local default', () => {
  const cluster = useTempCluster(2);
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(async () => {
    if (orchestrator && orchestrator.child.exitCode === null) orchestrator.child.kill('SIGKILL');
    orchestrator = undefined;
    await runEntry('provisioning/src/main.ts', ['teardown', ...cluster.cliFlags], { env });
  });

  it('provision, start, load 100 requests on 5 threads, status, SIGTERM, teardown', { timeout: 120_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...cluster.cliFlags], { env });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    expect(inventory.containers).toHaveLength(4);
    const pids = inventory.containers.map((c) => Number(c.runtimeId));

    orchestrator = await startOrchestrator(cluster.statePath);
    const resultPath = join(cluster.dir, 'load.json');
    const load = await runEntry(
      'load/src/main.ts',
      ['--url', `${orchestrator.url}/new_request`, '--requests', '100', '--threads', '5', '--json', resultPath, '--no-progress'],
      { env },
    );
    expect(load.code, load.stderr).toBe(0);
    const result = JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 100 });
    expect(Object.keys(result.servedBy).sort()).toEqual(inventory.containers.map((c) => c.id).sort());

    // Every answer came from the model: the containers' own counters add up to the 100 requests.
    const health = await Promise.all(inventory.containers.map((c) => containerHealth(`http://${c.host}:${c.port}`)));
    expect(health.reduce((n, h) => n + h.served, 0)).toBe(100);
    for (const h of health) expect(h.maxInFlight).toBe(1);
    const sample = await request(`${orchestrator.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"What a wonderful day"}' });
    expect(await sample.body.json()).toMatchObject({ prediction: { label: 'positive' }, model: expect.stringMatching(/^vader-sentiment@/) });

    const live = await liveStatus(orchestrator.url);
    expect(live.containers.map((c) => c.state)).toEqual(['free', 'free', 'free', 'free']);
    expect(live.queue).toMatchObject({ length: 0 });
    const status = await runEntry('status/src/main.ts', ['--url', `${orchestrator.url}/status`, '--file', cluster.statePath], { env });
    expect(status.code, status.stderr).toBe(0);
    for (const c of inventory.containers) expect(status.stdout).toContain(c.id);

    orchestrator.child.kill('SIGTERM');
    expect(await orchestrator.exited).toBe(0);
    const afterStop = await readState(cluster.statePath);
    expect(afterStop.orchestrator?.running).toBe(false);
    expect(afterStop.counters).toMatchObject({ accepted: 101, completed: 101, failed: 0 });

    const teardown = await runEntry('provisioning/src/main.ts', ['teardown', ...cluster.cliFlags], { env });
    expect(teardown.code, teardown.stderr).toBe(0);
    expect(await pidsGone(pids)).toBe(true);
    expect((await readState(cluster.statePath)).containers).toEqual([]);
  });

  it('1,000 requests at concurrency 64 lose nothing when a container process is killed mid-run', { timeout: 120_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', '--work-ms', '5', ...cluster.cliFlags], { env });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    orchestrator = await startOrchestrator(cluster.statePath);
    const url = orchestrator.url;

    const resultPath = join(cluster.dir, 'load.json');
    const loading = runEntry(
      'load/src/main.ts',
      ['--url', `${url}/new_request`, '--requests', '1000', '--threads', '4', '--concurrency', '64', '--json', resultPath, '--no-progress'],
      { env },
    );
    // Kill one container while requests are certainly running on it.
    const victim = inventory.containers[1]!;
    const survivors = inventory.containers.filter((c) => c !== victim);
    for (;;) {
      const live = await liveStatus(url);
      if ((live.counters?.completed ?? 0) > 100 && live.containers.find((c) => c.id === victim.id)?.state === 'busy') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    process.kill(Number(victim.runtimeId), 'SIGKILL');

    const load = await loading;
    expect(load.code, load.stderr).toBe(0);
    const result = JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 1000 });
    expect(result.failed).toBe(0);
    for (const c of survivors) expect((await containerHealth(`http://${c.host}:${c.port}`)).maxInFlight).toBe(1);
    const live = await liveStatus(url);
    // The request the victim was computing was sent again, not lost.
    expect(live.counters?.redispatched).toBeGreaterThanOrEqual(1);
    // And the victim was replaced: a new process on the same port, back in rotation.
    const healed = await poll(async () => {
      const record = (await liveStatus(url)).containers.find((c) => c.id === victim.id);
      return record?.restarts === 1 && record.state === 'free' ? record : undefined;
    }, `${victim.id} replaced`);
    expect(healed.runtimeId).not.toBe(victim.runtimeId);
    expect(healed.history.map((h) => h.state)).toEqual(expect.arrayContaining(['unhealthy', 'starting', 'free']));
    expect((await containerHealth(`http://${victim.host}:${victim.port}`)).container).toBe(victim.id);
  });

  it('reconciles on start: a recorded container that died is down, a running one missing from the record is adopted', { timeout: 120_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...cluster.cliFlags], { env });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const recorded = await readState(cluster.statePath);
    const [dead, forgotten] = [recorded.containers[0]!, recorded.containers[3]!];
    process.kill(Number(dead.runtimeId), 'SIGKILL');
    expect(await pidsGone([Number(dead.runtimeId)])).toBe(true);
    await writeFile(cluster.statePath, JSON.stringify({ ...recorded, containers: recorded.containers.filter((c) => c !== forgotten) }));

    // Without replacement, so what reconciliation decided stays visible.
    orchestrator = await startOrchestrator(cluster.statePath, ['--replace-unhealthy', 'false']);
    const url = orchestrator.url;
    const live = await liveStatus(url);
    expect(live.containers).toHaveLength(4);
    expect(live.containers.find((c) => c.id === dead.id)?.state).toBe('down');
    expect(live.containers.find((c) => c.id === forgotten.id)).toMatchObject({ runtimeId: forgotten.runtimeId, workerId: forgotten.workerId, port: forgotten.port });
    const load = await runEntry('load/src/main.ts', ['--url', `${url}/new_request`, '--requests', '60', '--threads', '2', '--no-progress', '--json', '-'], { env });
    expect(load.code, load.stderr).toBe(0);
    const servedBy = (JSON.parse(load.stdout) as LoadResult).servedBy;
    expect(servedBy[forgotten.id]).toBeGreaterThan(0);
    expect(servedBy[dead.id]).toBeUndefined();
  });
});

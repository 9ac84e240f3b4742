import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateOptions } from '../../load/src/options.js';
import { runLoad, type LoadResult } from '../../load/src/run-load.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { startBackend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { clientKeysEnv, toolEnv, type TestKey } from '../helpers/client-keys.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { startOrchestrator as startOrchestratorProcess, useProcessRig } from '../helpers/orchestrator-process.js';

const rig = useRig();

// Against the real orchestrator: the x-served-by contract and the spread the script reports.
describe('runLoad against the orchestrator', () => {
  it('reports per container exactly what each container served', async () => {
    rig.backends = await Promise.all(['w1-c1', 'w1-c2', 'w2-c1', 'w2-c2'].map((id) => startBackend(id, { delayMs: 5 })));
    rig.running = await startOrchestrator(rig.backends);
    const result = await runLoad(validateOptions({ url: `${rig.running.url}/new_request`, requests: 200, threads: 4, concurrency: 8 }));
    expect(result).toMatchObject({ succeeded: 200, failed: 0, errors: {} });
    expect(result.servedBy).toEqual(Object.fromEntries(rig.backends.map((b) => [b.id, b.stats.served])));
    for (const b of rig.backends) expect(b.stats.maxInFlight).toBe(1);
  });
});

describe('npm run load against an orchestrator with client keys', () => {
  const loader: TestKey = { name: 'loader', key: 'orch_load-test-key-4f1c9a2e7b', scopes: ['infer'] };
  const reader: TestKey = { name: 'reader', key: 'orch_load-test-read-8d3e6b0a5c', scopes: ['read'] };
  const processRig = useProcessRig();
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'load-keys-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The compiled orchestrator over one backend, with the two keys and its access log on. */
  async function start(): Promise<string> {
    processRig.backend = await startBackend('k1');
    const statePath = join(dir, 'state.json');
    await writeFile(statePath, JSON.stringify(unmanagedInventory('local', [processRig.backend])));
    processRig.orchestrator = await startOrchestratorProcess(statePath, ['--access-log', 'true'], { env: clientKeysEnv([loader, reader]) });
    return `${processRig.orchestrator.url}/new_request`;
  }
  const load = (url: string, key: string | undefined, extra: string[] = []) =>
    runEntry('load/src/main.ts', ['--url', url, '--requests', '12', '--concurrency', '3', '--no-progress', ...extra], { env: toolEnv(key) });

  it('sends ORCHESTRATOR_KEY as a bearer key, and shows it neither in its output nor in its reports', async () => {
    const url = await start();
    const json = join(dir, 'result.json');
    const html = join(dir, 'report.html');
    const { code, stdout, stderr } = await load(url, loader.key, ['--json', json, '--report', html]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/status +200: 12/);
    expect((JSON.parse(await readFile(json, 'utf8')) as LoadResult).succeeded).toBe(12);
    expect(processRig.backend!.stats.served).toBe(12);
    // The orchestrator knew whose requests they were.
    expect(processRig.orchestrator!.output.stdout).toContain('"client":"loader"');
    for (const text of [stdout, stderr, await readFile(json, 'utf8'), await readFile(html, 'utf8')]) expect(text).not.toContain(loader.key);
  });

  it.each([
    ['no key', 401, undefined],
    ['a key the orchestrator does not know', 401, 'orch_load-test-unknown-2b9d7c'],
    ['a read key', 403, reader.key],
  ])('with %s, every request gets %i and none reaches a container', async (_what, status, key) => {
    const url = await start();
    const { code, stdout } = await load(url, key);
    expect(code).toBe(1);
    expect(stdout).toMatch(new RegExp(`status +${status}: 12`));
    expect(processRig.backend!.stats.served).toBe(0);
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { startBackend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { clientKeysEnv, toolEnv, type TestKey } from '../helpers/client-keys.js';
import { useTempCluster } from '../helpers/cluster.js';
import { startMachineOrchestrator } from '../helpers/machine-view.js';
import { startOrchestrator } from '../helpers/orchestrator-fixture.js';
import { startOrchestrator as startOrchestratorProcess, useProcessRig } from '../helpers/orchestrator-process.js';
import { waitFor } from '../helpers/wait-for.js';
import type { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { refusingUrl } from '../load/test-server.js';
import { sampleState } from './fixtures.js';

const runStatus = (args: string[]) => runEntry('status/src/main.ts', args);

/** A stand-in orchestrator answering GET /status with `status` and `body`. */
async function serveStatus(status: number, body: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/status`, server };
}

let dir: string;
let server: Server | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'status-cli-'));
});
afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

const fileState = { ...sampleState, cluster: 'from-file', writer: 'provisioning' as const };

describe('npm run status', () => {
  it('prints the live orchestrator state when it answers', async () => {
    const live = await serveStatus(200, JSON.stringify(sampleState));
    server = live.server;
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify(fileState));
    const { code, stdout, stderr } = await runStatus(['--url', live.url, '--file', file]);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toContain(`cluster demo  source: live orchestrator ${live.url}, updated 2025-03-01T12:00:00.000Z`);
    expect(stdout).toMatch(/w1-c1 +w1 +127\.0\.0\.1:5001 +busy +1\/1 +120/);
    expect(stdout).toContain('queue     3/1000 waiting');
  });

  it("reads a real orchestrator's GET /status", async () => {
    const backends = await Promise.all(['w1-c1', 'w1-c2'].map((id) => startBackend(id)));
    const running = await startOrchestrator(backends);
    try {
      const { code, stdout } = await runStatus(['--url', `${running.url}/status`, '--file', join(dir, 'missing.json')]);
      expect(code).toBe(0);
      expect(stdout).toContain(`source: live orchestrator ${running.url}/status`);
      expect(stdout).toMatch(/orchestrator {2}running, pid \d+/);
      expect(stdout).toMatch(new RegExp(`w1-c2 +w1 +127\\.0\\.0\\.1:${backends[1]!.port} +free +0/1`));
    } finally {
      await running.close();
      await Promise.all(backends.map((b) => b.kill()));
    }
  });

  it('prints the raw state with --json', async () => {
    const live = await serveStatus(200, JSON.stringify(sampleState));
    server = live.server;
    const { code, stdout } = await runStatus(['--url', live.url, '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(sampleState);
  });

  it('falls back to the file when no orchestrator answers, and says why on stderr', async () => {
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify(fileState));
    const { code, stdout, stderr } = await runStatus(['--url', await refusingUrl(), '--file', file]);
    expect(code).toBe(0);
    expect(stdout).toContain(`cluster from-file  source: file ${file} (written by provisioning)`);
    expect(stderr).toMatch(/^note: .*ECONNREFUSED.*\n$/);
  });

  it('falls back to the file when the orchestrator answers something else than a state', async () => {
    const live = await serveStatus(200, JSON.stringify({ hello: 'world' }));
    server = live.server;
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify(fileState));
    const { code, stdout } = await runStatus(['--url', live.url, '--file', file, '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(fileState);
  });

  it('exits 1 with one line when neither the orchestrator nor the file is there', async () => {
    const { code, stdout, stderr } = await runStatus(['--url', await refusingUrl(), '--file', join(dir, 'missing.json')]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: no cluster status: .*ECONNREFUSED.*missing\.json.* \[STATUS_UNAVAILABLE\]\n$/);
  });

  it('exits 1 with one line when the orchestrator is down and the file is invalid', async () => {
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify({ ...sampleState, version: 7 }));
    const { code, stderr } = await runStatus(['--url', await refusingUrl(), '--file', file]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error: no cluster status: .*\[STATE_FILE_INVALID\]\n$/);
  });

  it('exits 2 on a bad --url', async () => {
    const { code, stderr } = await runStatus(['--url', 'localhost:8080']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^error: --url: .*\[USAGE\]\n$/);
  });
});

describe('npm run status, of an orchestrator with client keys', () => {
  const reader: TestKey = { name: 'reader', key: 'orch_status-test-read-6a2f9c1d4e', scopes: ['read'] };
  const caller: TestKey = { name: 'caller', key: 'orch_status-test-infer-0b7e3d8a5f', scopes: ['infer'] };
  const rig = useProcessRig();

  /** The compiled orchestrator over one backend with both keys; its state file is the fallback. */
  async function start(): Promise<{ url: string; file: string }> {
    rig.backend = await startBackend('s1');
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify(unmanagedInventory('keyed', [rig.backend])));
    rig.orchestrator = await startOrchestratorProcess(file, [], { env: clientKeysEnv([reader, caller]) });
    return { url: `${rig.orchestrator.url}/status`, file };
  }

  it('sends ORCHESTRATOR_KEY and prints the live state', async () => {
    const { url, file } = await start();
    const { code, stdout, stderr } = await runEntry('status/src/main.ts', ['--url', url, '--file', file], { env: toolEnv(reader.key) });
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toContain(`cluster keyed  source: live orchestrator ${url}`);
    expect(stdout).not.toContain(reader.key);
  });

  it.each([
    ['no key', undefined, 401, 'is not set'],
    ['a key it does not know', 'orch_status-test-unknown-3c8b1e', 401, 'holds a key it does not take'],
    ['a key without the read scope', caller.key, 403, 'holds a key without the read scope'],
  ])('with %s, says in one line that a read key is needed and shows the state file', async (_what, key, status, why) => {
    const { url, file } = await start();
    const { code, stdout, stderr } = await runEntry('status/src/main.ts', ['--url', url, '--file', file], { env: toolEnv(key) });
    expect(code).toBe(0);
    expect(stdout).toContain(`cluster keyed  source: file ${file}`);
    expect(stderr).toBe(`note: orchestrator ${url}: answered HTTP ${status}: a read key is needed (ORCHESTRATOR_KEY ${why}); showing ${file}\n`);
  });

  it('exits 1 with that line when there is no state file either', async () => {
    const { url } = await start();
    const { code, stdout, stderr } = await runEntry('status/src/main.ts', ['--url', url, '--file', join(dir, 'missing.json')], { env: toolEnv() });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: no cluster status: .*answered HTTP 401: a read key is needed \(ORCHESTRATOR_KEY is not set\); .*missing\.json.* \[STATUS_UNAVAILABLE\]\n$/);
  });
});

describe('npm run status, of an orchestrator with a machine autoscaler (real worker processes)', () => {
  const cluster = useTempCluster(2);
  let orchestrator: Orchestrator | undefined;
  afterEach(async () => {
    await orchestrator?.close();
    orchestrator = undefined;
  });

  it('prints its bounds, the worker it launched and who launched each, its decisions and where the launch took its time', { timeout: 60_000 }, async () => {
    const started = await startMachineOrchestrator(cluster);
    orchestrator = started.orchestrator;
    orchestrator.autoscaler.scaleTo(4, 'test');
    const o = orchestrator;
    await waitFor(() => o.pool.capacity() === 4, 30_000, 'w2 launched and its containers in rotation');
    const { code, stdout } = await runStatus(['--url', `${started.url}/status`, '--file', join(dir, 'missing.json')]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}w2 +local +127\.0\.0\.1 +up +autoscaler +2 +process$/m);
    expect(stdout).toMatch(/^ {2}w1 +local +127\.0\.0\.1 +up +provisioning +2 +process$/m);
    const section = stdout.slice(stdout.indexOf('\nmachines  ') + 1);
    expect(section).toMatch(/^machines {2}process, 1 to 2 workers: 2 up, 0 draining, 0 launching\n {2}since the start: launched 1, launch failed 0, adopted 0, released 0, release failed 0\n/);
    expect(section).toMatch(/^ {2}last launch w2: decision \d+\.\d s, launch \d+\.\d s, start \d+\.\d s, probe \d+\.\d s$/m);
    expect(section).toMatch(/^ {2}\S+ {2}launch w2 \(1 worker\) {2}.*fit on no worker$/m);
    expect(section).toMatch(/^ {2}\S+ {2}launched w2 \(\d workers\) {2}/m);
  });
});

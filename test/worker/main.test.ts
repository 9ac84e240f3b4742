import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../common/src/paths.js';
import { getJson, postJson } from './helpers.js';

const children: ChildProcess[] = [];

afterEach(() => {
  // Whatever a test did, no worker outlives it.
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

/** Run worker/src/main.ts as `node --import tsx` with these worker variables (others cleared), capturing output. */
function spawnWorker(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, HOST: '127.0.0.1', CONTAINER_ID: '', WORK_MS: '', ENABLE_CRASH_API: '', MAX_BODY_BYTES: '', LOG_LEVEL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`worker exited early with code ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`worker at ${url} never became healthy`);
}

describe('worker main', () => {
  it('serves on PORT, logs a listening line and exits 0 on SIGTERM after finishing in-flight work', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const worker = spawnWorker({ PORT: String(port), CONTAINER_ID: 'main-test', WORK_MS: '500' });
    await waitForHealth(url, worker.child);

    const listening = JSON.parse(worker.stdout().split('\n')[0]!);
    expect(listening).toMatchObject({ msg: 'listening', url, container: 'main-test' });

    const run = postJson(`${url}/run_model`, { text: 'Lovely!' });
    while ((await getJson(`${url}/health`)).body.inFlight === 0) await sleep(20);
    worker.child.kill('SIGTERM');

    const answer = await run;
    expect(answer.status).toBe(200);
    expect(answer.body.container).toBe('main-test');
    const [code, signal] = await worker.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  });

  it('rejects an invalid PORT with one line on stderr naming it and a non-zero exit', async () => {
    const worker = spawnWorker({ PORT: 'abc' });
    const [code] = await worker.exited;
    expect(code).not.toBe(0);
    const lines = worker.stderr().trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PORT');
    expect(worker.stdout()).toBe('');
  });
});

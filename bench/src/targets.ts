import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { DEFAULT_CONTRACT, type ModelContract } from '../../status/src/schema.js';
import { pollUntil } from '../../common/src/poll-until.js';

/** A proxy under test: where to POST, and its process. */
export interface Target {
  name: string;
  /** The URL a model request goes to. */
  url: string;
  pid: number;
  /** The orchestrator's status file. */
  statePath?: string;
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Poll `url` until it answers 200. */
async function until200(url: string, child: ChildProcess, what: string): Promise<void> {
  await pollUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before answering`);
      const ok = await request(url).then(
        async (r) => {
          await r.body.dump();
          return r.statusCode === 200;
        },
        () => false,
      );
      return ok ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, onTimeout: () => new Error(`${what} did not answer ${url} within 30 s`) },
  );
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
      child.kill('SIGKILL');
      await exited;
    }
  };
}

/**
 * This orchestrator over the backends (unmanaged containers of one worker whose apps follow
 * `contract`, the default one when absent), started from the harness as `npm start` runs it:
 * compiled, from dist/ (build first).
 */
export async function startOrchestrator(dir: string, ports: number[], name = 'orchestrator', contract?: ModelContract): Promise<Target> {
  const statePath = join(dir, `${name.replace(/\W+/g, '-')}-state.json`);
  await writeFile(statePath, JSON.stringify(unmanagedInventory('bench', ports.map((port, i) => ({ id: `b${i + 1}`, port })), contract)));
  // Room for the 10,000-request burst, and time for it to drain through the backends.
  return startCompiledOrchestrator(statePath, name, ['--max-queue', '20000', '--queue-timeout-ms', '120000']);
}

/** The compiled orchestrator (build first) over the inventory already in `statePath`, on a free port, logging warnings and errors only. */
export async function startCompiledOrchestrator(statePath: string, name = 'orchestrator', args: string[] = []): Promise<Target> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['dist/orchestrator/src/main.js', '--port', String(port), '--state-path', statePath, '--log-level', 'warn', ...args],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const base = `http://127.0.0.1:${port}`;
  await until200(`${base}/health`, child, name);
  return { name, url: `${base}/new_request`, pid: child.pid!, statePath, stop: stopper(child) };
}

/**
 * HAProxy as the industrial reference for the same job: one thread (two are slower on 2 cores),
 * `maxconn 1` per server so excess requests wait in its queue, `balance leastconn`, health checks,
 * keep-alive to the servers, and no `option abortonclose` (it would free a server still working).
 */
export function haproxyConfig(port: number, backendPorts: number[], healthPath = '/health'): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  timeout connect 2s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  timeout queue 120s',
    '  maxconn 4096',
    'frontend models_in',
    `  bind 127.0.0.1:${port}`,
    '  default_backend models',
    'backend models',
    '  balance leastconn',
    '  http-reuse always',
    `  option httpchk GET ${healthPath}`,
    ...backendPorts.map((p, i) => `  server b${i + 1} 127.0.0.1:${p} maxconn 1 check inter 1s`),
    '',
  ].join('\n');
}

/** HAProxy over the backends, whose apps follow `contract` (the bundled worker's when absent): health-checked on its health path, requests sent to its predict path. */
export async function startHaproxy(dir: string, ports: number[], name = 'haproxy', contract: ModelContract = DEFAULT_CONTRACT): Promise<Target> {
  const port = await freePort();
  const configPath = join(dir, `${name.replace(/\W+/g, '-')}.cfg`);
  await writeFile(configPath, haproxyConfig(port, ports, contract.healthPath));
  const child = spawn('haproxy', ['-db', '-f', configPath], { stdio: ['ignore', 'ignore', 'inherit'] });
  await until200(`http://127.0.0.1:${port}${contract.healthPath}`, child, name);
  return { name, url: `http://127.0.0.1:${port}${contract.predictPath}`, pid: child.pid!, stop: stopper(child) };
}

/** Peak resident memory of a process so far, in bytes (Linux). */
export async function peakRss(pid: number): Promise<number | null> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : null;
}

/** What bench/src/node-floor.ts is called in the reports. */
export const NODE_FLOOR = 'Node: minimal proxy';

/** The least a Node proxy can do (bench/src/node-floor.ts, compiled: build first) over the backends: Node's own floor beside the orchestrator. */
export async function startNodeFloor(ports: number[]): Promise<Target> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/bench/src/node-floor.js', 'floor-proxy', String(port), ports.join(',')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}/run_model`;
  await until200(url, child, NODE_FLOOR);
  return { name: NODE_FLOOR, url, pid: child.pid!, stop: stopper(child) };
}

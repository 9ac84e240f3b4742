import { execFileSync, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Pool } from 'undici';
import { pollUntil } from '../../common/src/poll-until.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { BackendFarm } from './backend-farm-process.js';
import type { InstructionCount, InstructionsResult } from './instructions-report.js';
import type { Stoppable } from './model-bench.js';
import { freePort, haproxyConfig, NODE_FLOOR } from './targets.js';

/** Requests sent before counting starts (connections open, the JIT done tiering up: with 4,000 the count was 7% higher), then counted. */
const WARM_UP = 12_000;
const COUNTED = 5_000;
/** Requests in flight at once: the 8 backends' worth, so nothing queues and every target does the same work per request. */
const CONNECTIONS = 8;
const BACKENDS = 8;
/** Background work (health probes, status writes, scaling) put an hour away: what is counted is the requests' own. */
const HOUR_MS = '3600000';

export interface InstructionsOptions {
  dir: string;
  track(running: Stoppable): void;
}

interface Subject {
  target: string;
  what: string;
  /** The route requests are POSTed to. */
  path: string;
  /** The command line, given the port to listen on. */
  command(port: number): string[];
}

/**
 * Instructions per request, user space, every thread of the process, counted by callgrind
 * (valgrind) between the warm-up and the end of the counted requests: the same figure on a busy
 * machine as on a quiet one, where CPU times vary by tens of percent. The kernel's share (the socket
 * calls, the same four per request for every target here) is not in it.
 */
export async function benchInstructions(options: InstructionsOptions): Promise<InstructionsResult> {
  ensureValgrind();
  const farm = new BackendFarm(BACKENDS);
  options.track(farm);
  await farm.start();
  await farm.reset(0);
  const statePath = join(options.dir, 'instructions-state.json');
  await writeFile(statePath, JSON.stringify(unmanagedInventory('bench', farm.ports.map((port, i) => ({ id: `b${i + 1}`, port })))));
  const haproxyPath = join(options.dir, 'instructions-haproxy.cfg');
  const orchestrator = (port: number): string[] => [
    process.execPath,
    'dist/orchestrator/src/main.js',
    ...['--port', String(port), '--state-path', statePath, '--log-level', 'warn'],
    ...['--health-interval-ms', HOUR_MS, '--status-write-interval-ms', HOUR_MS, '--scale-interval-ms', HOUR_MS],
  ];
  // Compiled with the orchestrator (tsconfig.build.json), and run the way it runs: under tsx the same code costs a fifth more.
  const floor = (mode: string) => (port: number) => [process.execPath, 'dist/bench/src/node-floor.js', mode, String(port), farm.ports.join(',')];
  const subjects: Subject[] = [
    { target: 'orchestrator /new_request', what: 'the compiled orchestrator, default settings', path: '/new_request', command: orchestrator },
    { target: 'orchestrator /run_model', what: 'the same, a forwarded path', path: '/run_model', command: orchestrator },
    {
      target: 'haproxy',
      what: 'HAProxy as configured above',
      path: '/run_model',
      command: () => ['haproxy', '-db', '-f', haproxyPath],
    },
    { target: 'Node: HTTP server alone', what: "node:http reading each request's body and answering it itself", path: '/run_model', command: floor('floor-server') },
    { target: NODE_FLOOR, what: "node:http and the orchestrator's upstream client, a FIFO over free backends, nothing else", path: '/run_model', command: floor('floor-proxy') },
  ];
  const counts: InstructionCount[] = [];
  try {
    for (const subject of subjects) {
      const port = await freePort();
      if (subject.target === 'haproxy') await writeFile(haproxyPath, haproxyConfig(port, farm.ports).replaceAll('check inter 1s', `check inter ${HOUR_MS}`));
      const perRequest = await instructionsPerRequest({ ...subject, command: subject.command(port), port, warmUp: WARM_UP, counted: COUNTED }, options);
      counts.push({ target: subject.target, what: subject.what, instructionsPerRequest: perRequest });
      process.stderr.write(`[bench] instructions per request  ${subject.target.padEnd(26)} ${Math.round(perRequest).toLocaleString('en-US')}\n`);
    }
  } finally {
    await farm.stop();
  }
  return { valgrind: execFileSync('valgrind', ['--version']).toString().trim(), warmUp: WARM_UP, counted: COUNTED, connections: CONNECTIONS, counts };
}

/** Make sure valgrind (callgrind and callgrind_control) is installed: Debian's package when missing. */
export function ensureValgrind(): void {
  execFileSync('bash', ['scripts/apt-install.sh', 'valgrind'], { stdio: 'inherit' });
}

/** One process to count: its command line, the port it listens on, the route to POST to, and how many requests to send before and while counting. */
export interface Counted {
  target: string;
  command: string[];
  port: number;
  path: string;
  warmUp: number;
  counted: number;
}

/** Run `subject.command` under callgrind, send the warm-up, count `counted` requests, stop it: user-space instructions per request. */
export async function instructionsPerRequest(subject: Counted, options: InstructionsOptions): Promise<number> {
  const child = spawn('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(options.dir, 'callgrind.%p.out')}`, ...subject.command], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  options.track({ stop });
  const pool = new Pool(`http://127.0.0.1:${subject.port}`, { connections: CONNECTIONS });
  try {
    // Under valgrind a process starts tens of times slower than usual.
    await pollUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`${subject.target} exited under valgrind: ${log.slice(-500)}`);
        return (await post(pool, subject.path, 1).then(() => true, () => undefined)) ? true : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 500, onTimeout: () => new Error(`${subject.target} did not answer under valgrind within 180 s`) },
    );
    await post(pool, subject.path, subject.warmUp);
    execFileSync('callgrind_control', ['--instr=on', String(child.pid)], { stdio: 'ignore' });
    await post(pool, subject.path, subject.counted);
    execFileSync('callgrind_control', ['--instr=off', String(child.pid)], { stdio: 'ignore' });
  } finally {
    await pool.close();
    await stop();
  }
  const collected = /Collected : (\d+)/.exec(log)?.[1];
  if (!collected) throw new Error(`callgrind reported no count for ${subject.target}: ${log.slice(-500)}`);
  return Number(collected) / subject.counted;
}

/** `requests` POSTs, CONNECTIONS at a time; every one must answer 200. */
async function post(pool: Pool, path: string, requests: number): Promise<void> {
  let left = requests;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) {
        const res = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"benchmark"}' });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`${path} answered ${res.statusCode}`);
      }
    }),
  );
}

import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { AppError } from '../../common/src/errors.js';
import { freeBasePort } from '../../common/src/free-ports.js';
import { pollUntil } from '../../common/src/poll-until.js';
import { orchestratorConfigSchema } from '../../orchestrator/src/config.js';
import { SERVED_BY_HEADER } from '../../orchestrator/src/proxy-handler.js';
import { LABELS } from '../../runtime/src/driver.js';
import { fetchLiveStatus } from '../../status/src/live-status.js';
import type { StateFile } from '../../status/src/schema.js';
import type { MachineParts, MachineRound, MachinesResult } from './machines-report.js';
import type { Stoppable } from './model-bench.js';
import { startCompiledOrchestrator, type Target } from './targets.js';

const run = promisify(execFile);

/** The tag `npm run build:image` gives the worker image: the bench measures the image a user builds. */
export const WORKER_IMAGE = 'inference-worker:latest';
const ROUNDS = 3;
/** Requests in flight at once: far more than w1's 2 containers hold, so the queue asks for more at once. */
const CONCURRENCY = 16;
/** The containers' simulated inference time (WORK_MS). */
const WORK_MS = 50;
/** docker-compose.worker.yml runs two containers per worker. */
const CONTAINERS_PER_WORKER = 2;
/** How far the parts may fall short of or exceed the total: ISO times in the status are whole ms, and two clock readings sit between them. */
export const TOLERANCE_MS = 5;
/** Longest the new worker may take to answer a request before the round fails. */
const FIRST_ANSWER_TIMEOUT_MS = 180_000;
/** How often the load looks for a failed launch in /status. */
const LAUNCH_WATCH_MS = 500;

/**
 * The orchestrator's settings, as flags: the concurrency policy, 2 containers a worker (w1 is
 * full from the start), 1 to 2 workers; one pass a second, as a user would run it. minContainers 2
 * keeps w1's two from being scaled in before the load starts.
 */
const SETTINGS = {
  autoscalePolicy: 'concurrency',
  scaleIntervalMs: 1_000,
  minContainers: 2,
  maxContainers: 4,
  maxContainersPerWorker: CONTAINERS_PER_WORKER,
  minWorkers: 1,
  maxWorkers: 2,
} as const;

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const SETTING_FLAGS = Object.entries(SETTINGS).flatMap(([key, value]) => [`--${kebab(key)}`, String(value)]);

export interface MachinesOptions {
  /** Where each round's state file goes. */
  dir: string;
  /** Called with each process and cluster as soon as it exists, so the caller can stop it if interrupted. */
  track(running: Stoppable): void;
}

/** A round's figures do not hold together (the parts miss the total, the need predates the load): the bench would report something other than what happened. */
export class MachinesAccountingError extends AppError {
  constructor(message: string) {
    super('BENCH_MACHINES_ACCOUNTING', message);
  }
}

/** What one round observed: the client's instants (epoch ms) and the orchestrator's status right after. */
export interface MachineObservation {
  /** The load started: CONCURRENCY requests at once. */
  loadStartedAt: number;
  /** The first answer served by a container of a worker other than w1, and that container. */
  firstAnswerAt: number;
  servedBy: string;
  /** The machine's 1-minute load average as the load started. */
  loadAverage: number;
  status: StateFile;
}

const epoch = (iso: string): number => Date.parse(iso);

/**
 * The round's total and its parts, from the client's instants and the orchestrator's launch timing
 * and decisions. The end of the orchestrator's part is read independently of its timing (the `at`
 * of its `launched` decision), so the parts adding up to the total checks the timing covers the
 * launch whole. Throws MachinesAccountingError when anything does not hold.
 */
export function roundOf(o: MachineObservation): Omit<MachineRound, 'composeVersionMs'> {
  const machines = o.status.machines;
  if (!machines) throw new MachinesAccountingError('the orchestrator reports no machine autoscaler in /status');
  const workerId = o.status.containers.find((c) => c.id === o.servedBy)?.workerId;
  if (!workerId || workerId === 'w1') throw new MachinesAccountingError(`the first answer of a new worker came from ${o.servedBy}, which /status puts on ${workerId ?? 'no worker'}`);
  const timing = machines.launches.find((l) => l.workerId === workerId);
  const launched = machines.decisions.find((d) => d.action === 'launched' && d.workerId === workerId);
  if (!timing || !launched) throw new MachinesAccountingError(`/status has no launch timing or launched decision for ${workerId}`);
  if (timing.needSince === null || timing.decisionMs === null) throw new MachinesAccountingError(`${workerId} was launched for no need the machine autoscaler saw`);
  const needSince = epoch(timing.needSince);
  // The need must come from the load: before it, w1 held everything.
  if (needSince < o.loadStartedAt - TOLERANCE_MS) {
    throw new MachinesAccountingError(`the machine autoscaler saw the need at ${timing.needSince}, before the load started at ${new Date(o.loadStartedAt).toISOString()}`);
  }
  const parts: MachineParts = {
    autoscalerMs: needSince - o.loadStartedAt,
    decisionMs: timing.decisionMs,
    launchMs: timing.launchMs,
    startMs: timing.startMs,
    probeMs: timing.probeMs,
    dispatchMs: o.firstAnswerAt - epoch(launched.at),
  };
  const totalMs = o.firstAnswerAt - o.loadStartedAt;
  const unaccountedMs = totalMs - Object.values(parts).reduce((a, b) => a + b, 0);
  if (Math.abs(unaccountedMs) > TOLERANCE_MS) {
    throw new MachinesAccountingError(`${workerId}: the parts ${JSON.stringify(parts)} miss the total of ${totalMs} ms by ${unaccountedMs} ms (more than ${TOLERANCE_MS})`);
  }
  return { startedAt: new Date(o.loadStartedAt).toISOString(), loadAverage: o.loadAverage, workerId, servedBy: o.servedBy, totalMs, parts, unaccountedMs };
}

/** A child process run to its end, its progress on our stderr; rejects unless it exits 0. */
function runToEnd(args: string[], what: string): Promise<void> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited with ${code}`))));
  });
}

/** The cluster's containers the engine still has, by its label: compose projects and anything else the cluster made. */
async function clusterContainers(cluster: string): Promise<string[]> {
  const { stdout } = await run('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${cluster}`]);
  return stdout.split('\n').filter(Boolean);
}

/**
 * A Docker cluster of one worker, as a user makes it: `npm run provision -- --runtime docker`.
 * Its `stop()` (tracked before anything starts) is `npm run teardown`, then a forced removal of
 * whatever the cluster's label still finds; `teardown()` is the same but fails when teardown left any.
 */
function dockerCluster(options: MachinesOptions, cluster: string, statePath: string, basePort: number) {
  const flags = ['--runtime', 'docker', '--worker-image', WORKER_IMAGE, '--cluster', cluster, '--state-path', statePath, '--base-port', String(basePort)];
  const cli = (command: string, extra: string[] = []): Promise<void> =>
    runToEnd(['--import', 'tsx', 'provisioning/src/main.ts', command, ...flags, ...extra], `npm run ${command} (cluster ${cluster})`);
  let removal: Promise<{ failed: unknown; left: string[] }> | undefined;
  const teardown = () =>
    (removal ??= (async () => {
      const failed = await cli('teardown').then(() => undefined, (error: unknown) => error);
      const left = await clusterContainers(cluster);
      if (left.length > 0) await run('docker', ['rm', '-f', ...left]);
      return { failed, left };
    })());
  options.track({ stop: async () => void (await teardown()) });
  return {
    provision: () => cli('provision', ['--workers', '1', '--work-ms', String(WORK_MS)]),
    async teardown(): Promise<void> {
      const { failed, left } = await teardown();
      if (failed) throw failed;
      if (left.length > 0) throw new Error(`machines: npm run teardown left ${left.length} container(s) of cluster ${cluster} (removed now)`);
    },
  };
}

const statusOf = (target: Target): Promise<StateFile> => fetchLiveStatus(target.url.replace('/new_request', '/status'), 10_000);

/** Wait until w1's containers are in rotation, with the machine autoscaler running and nothing launching. */
async function ready(target: Target): Promise<void> {
  let last = 'no status yet';
  await pollUntil(
    async () => {
      const s = await statusOf(target);
      const inRotation = s.containers.filter((c) => c.workerId === 'w1' && (c.state === 'free' || c.state === 'busy')).length;
      last = `${inRotation} of w1's containers in rotation, machines ${s.machines ? `launching ${s.machines.launching.length}` : 'off'}`;
      return inRotation === CONTAINERS_PER_WORKER && s.workers.length === 1 && s.machines?.launching.length === 0 ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, onTimeout: () => new Error(`machines: the orchestrator was not ready within 30 s (${last})`) },
  );
}

/**
 * CONCURRENCY loops, each POSTing one request after another over a client of their own, until a
 * container of a worker other than w1 answers; every request must answer 200, and no launch may
 * fail (a retry after the back-off would be measured as the decision). Returns when the load started
 * (epoch ms, just before the first requests leave), that first answer's time and its container.
 */
async function loadUntilNewWorker(target: Target): Promise<Omit<MachineObservation, 'status'>> {
  const client = new Agent({ connections: CONCURRENCY });
  // Aborted with the reason the round fails; requests in flight finish, no loop sends another.
  const failed = new AbortController();
  const fail = (error: unknown): void => failed.abort(error);
  const timeout = setTimeout(() => fail(new Error(`machines: no container of a new worker answered within ${FIRST_ANSWER_TIMEOUT_MS / 1000} s`)), FIRST_ANSWER_TIMEOUT_MS);
  let first: { at: number; servedBy: string } | undefined;
  const going = (): boolean => !first && !failed.signal.aborted;
  const loop = async (): Promise<void> => {
    while (going()) {
      const response = await request(target.url, { method: 'POST', body: '{"text":"machines"}', headers: { 'content-type': 'application/json' }, dispatcher: client });
      const at = Date.now();
      await response.body.dump();
      if (response.statusCode !== 200) throw new Error(`machines: a request answered ${response.statusCode}`);
      const servedBy = String(response.headers[SERVED_BY_HEADER] ?? '');
      // Container ids start with their worker's; which worker holds it is checked against /status afterwards.
      if (!first && servedBy.split('-')[0] !== 'w1') first = { at, servedBy };
    }
  };
  const watchLaunches = async (): Promise<void> => {
    while (going()) {
      const machines = (await statusOf(target)).machines;
      if (machines && machines.counts.launchFailed > 0) throw new Error(`machines: the machine autoscaler's launch failed (${machines.lastError})`);
      await sleep(LAUNCH_WATCH_MS);
    }
  };
  const loadAverage = loadavg()[0]!;
  const loadStartedAt = Date.now();
  try {
    await Promise.all([...Array.from({ length: CONCURRENCY }, () => loop().catch(fail)), watchLaunches().catch(fail)]);
  } finally {
    clearTimeout(timeout);
    await client.close();
  }
  if (failed.signal.aborted) throw failed.signal.reason;
  return { loadStartedAt, firstAnswerAt: first!.at, servedBy: first!.servedBy, loadAverage };
}

/** One round: a fresh one-worker cluster, the orchestrator over it, the load until the new worker answers, then everything gone. */
async function machinesRound(options: MachinesOptions, round: number, compose: readonly string[]): Promise<MachineRound> {
  const dir = await mkdtemp(join(options.dir, `machines-${round}-`));
  const cluster = `bench-machines-${process.pid}-${round}`;
  // Room for w1 and w2, PORT_STRIDE (100, the default) apart.
  const basePort = await freeBasePort([0, 1, 100, 101]);
  const statePath = join(dir, 'state.json');
  const docker = dockerCluster(options, cluster, statePath, basePort);
  await docker.provision();
  const orchestrator = await startCompiledOrchestrator(statePath, `orchestrator (machines, round ${round})`, SETTING_FLAGS);
  options.track(orchestrator);
  let measured: MachineRound;
  try {
    await ready(orchestrator);
    const observed = await loadUntilNewWorker(orchestrator);
    const accounted = roundOf({ ...observed, status: await statusOf(orchestrator) });
    // Right after, on a machine as busy as during the launch.
    measured = { ...accounted, composeVersionMs: (await composeVersion(compose)).ms };
  } finally {
    await orchestrator.stop();
  }
  await docker.teardown();
  const p = measured.parts;
  process.stderr.write(
    `[bench] machines round ${round}: ${measured.totalMs} ms to ${measured.servedBy} (autoscaler ${p.autoscalerMs}, decision ${p.decisionMs}, launch ${p.launchMs}, ` +
      `start ${p.startMs}, probe ${p.probeMs}, dispatch ${p.dispatchMs}; unaccounted ${measured.unaccountedMs}; compose version ${measured.composeVersionMs} ms)\n`,
  );
  return measured;
}

/** The worker image as `npm run build:image` builds it (Docker's cache makes a rebuild take seconds); its short id. */
function buildWorkerImage(): string {
  execFileSync('bash', ['scripts/build-image.sh', 'worker'], { env: { ...process.env, WORKER_IMAGE }, stdio: ['ignore', 'ignore', 'inherit'] });
  return execFileSync('docker', ['image', 'inspect', '-f', '{{.Id}}', WORKER_IMAGE]).toString().trim().replace(/^sha256:/, '').slice(0, 12);
}

/** The compose program provisioning runs, picked in its order: the v2 plugin, else docker-compose 1.x. */
const composeCommand = (): Promise<string[]> => run('docker', ['compose', 'version']).then(() => ['docker', 'compose'], () => ['docker-compose']);

/** One `compose version --short`: the compose program's own start-up, which every launch pays; its output and ms. */
async function composeVersion(compose: readonly string[]): Promise<{ version: string; ms: number }> {
  const started = performance.now();
  const { stdout } = await run(compose[0]!, [...compose.slice(1), 'version', '--short']);
  return { version: stdout.trim(), ms: Math.round(performance.now() - started) };
}

/** The engine's version, and the compose program's. */
async function dockerVersions(compose: readonly string[]): Promise<MachinesResult['docker']> {
  const { stdout: engine } = await run('docker', ['version', '-f', '{{.Server.Version}}']);
  return { engine: engine.trim(), compose: `${compose.join(' ')} ${(await composeVersion(compose)).version}` };
}

/**
 * The machine autoscaler on the Docker runtime: ROUNDS rounds, each from one provisioned worker of
 * 2 containers, full, to the first request a container of a worker the autoscaler launched answers
 * (Docker engine running, build first).
 */
export async function benchMachines(options: MachinesOptions): Promise<MachinesResult> {
  const imageId = buildWorkerImage();
  const compose = await composeCommand();
  const rounds: MachineRound[] = [];
  for (let round = 1; round <= ROUNDS; round++) rounds.push(await machinesRound(options, round, compose));
  const config = orchestratorConfigSchema.parse(SETTINGS);
  return {
    date: new Date().toISOString(),
    image: { tag: WORKER_IMAGE, id: imageId },
    docker: await dockerVersions(compose),
    workMs: WORK_MS,
    concurrency: CONCURRENCY,
    toleranceMs: TOLERANCE_MS,
    config: {
      ...SETTINGS,
      targetConcurrency: config.targetConcurrency,
      scaleUpCooldownMs: config.scaleUpCooldownMs,
      workerScaleUpCooldownMs: config.workerScaleUpCooldownMs,
      workerSurplusMs: config.workerSurplusMs,
    },
    rounds,
  };
}

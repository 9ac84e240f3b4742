import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import type { ContainerRecord, StateFile } from '../../status/src/schema.js';
import { startClientLoad, type ClientLoad, type ClientOutcomes } from './client-load.js';
import { poll } from './docker.js';
import { containerHealth, liveStatus, readState, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from './orchestrator-process.js';
import { waitFor } from './wait-for.js';

/**
 * The fault drills of docs/RELIABILITY.md, the same on every runtime: each runs load from the
 * client side while something breaks, then counts what every request got.
 */
export interface DrillCluster {
  statePath: string;
  /** Kill a container as a crash would (SIGKILL the process, `docker kill` the container). */
  kill(runtimeId: string): Promise<void>;
  /** Runtime ids of the cluster's containers its runtime runs now. */
  running(): Promise<string[]>;
}

/** The drill cluster of a local provisioning at `statePath`: each container a worker process, killed with SIGKILL. */
export function processDrillCluster(statePath: string): DrillCluster {
  const driver = new ProcessDriver({ stateDir: processDriverDirs(statePath, 'local').stateDir });
  return {
    statePath,
    kill: async (runtimeId) => {
      process.kill(Number(runtimeId), 'SIGKILL');
    },
    running: async () => (await driver.list({})).filter((info) => info.state === 'running').map((info) => info.runtimeId),
  };
}

/**
 * Orchestrator settings of the drills: a request timeout a drill can wait out (work takes 5 ms), and
 * a crash-loop back-off that forgets a container healthy for 5 s. By default a container killed
 * again within 10 minutes is crash looping and waits 1 s, 2 s, 4 s ... before its next replacement,
 * and the wait is kept in the status file across restarts: the drills count lost requests, not waits.
 */
export const DRILL_FLAGS = ['--upstream-timeout-ms', '3000', '--restart-backoff-reset-ms', '5000', '--restart-backoff-max-ms', '5000'];

/**
 * None lost: every request got the model's answer. A 502, 503 or 504 is a request lost too, however
 * documented: the drills break containers, never the capacity to serve, so the orchestrator must
 * carry each request to a container that answers it.
 */
export function expectNoneLost(outcomes: ClientOutcomes): void {
  expect(outcomes.unanswered, 'requests without an answer').toEqual({});
  expect(outcomes.errors, 'error answers, by code').toEqual({});
  expect(outcomes.unexpected, 'other answers that are not the model’s, by status').toEqual({});
  expect(outcomes.model).toBe(outcomes.sent);
}

/** Until the load has had `count` model answers: it is in full flow, whatever the machine's pace. */
const modelAnswers = (load: ClientLoad, count: number): Promise<void> => waitFor(() => load.outcomes.model >= count, 30_000, `${count} model answers`);

const inRotation = (c: ContainerRecord): boolean => c.state === 'free' || c.state === 'busy';

/** Waits until every container is free again, the runtime runs exactly the inventory's containers, and returns the status. */
export async function expectSettled(cluster: DrillCluster, url: string): Promise<StateFile> {
  const status = await poll(async () => {
    const live = await liveStatus(url);
    return live.containers.every((c) => c.state === 'free') ? live : undefined;
  }, 'every container free again', 60_000);
  // Nothing started twice, nothing left behind.
  expect((await cluster.running()).sort()).toEqual(status.containers.map((c) => c.runtimeId).sort());
  for (const c of status.containers) expect((await containerHealth(`http://${c.host}:${c.port}`)).maxInFlight).toBeLessThanOrEqual(1);
  return status;
}

/** Set a fault on one container through its own drill route (worker/src/fault-injection.ts). */
export async function injectFault(c: ContainerRecord, fault: Record<string, unknown>): Promise<void> {
  const response = await request(`http://${c.host}:${c.port}/api/v1/_fault`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(fault) });
  expect(response.statusCode, await response.body.text()).toBe(200);
}

const started = new Set<OrchestratorProcess>();
const loads = new Set<ClientLoad>();

/** The orchestrator as `npm start` runs it, with the drill settings and `flags`; stopped by `cleanUpDrills` whatever happens. */
export async function startDrillOrchestrator(cluster: DrillCluster, flags: string[] = []): Promise<OrchestratorProcess> {
  const orchestrator = await startOrchestrator(cluster.statePath, [...DRILL_FLAGS, ...flags]);
  started.add(orchestrator);
  return orchestrator;
}

/** Client load on an orchestrator's /new_request; stopped by `cleanUpDrills` whatever happens. */
export function drillLoad(orchestrator: OrchestratorProcess, concurrency: number): ClientLoad {
  const load = startClientLoad(`${orchestrator.url}/new_request`, { concurrency, timeoutMs: 60_000 });
  loads.add(load);
  return load;
}

/** For afterEach: stop the loads a drill started (a failed one left them sending), then SIGKILL its orchestrators. */
export async function cleanUpDrills(): Promise<void> {
  await Promise.all([...loads].map((load) => load.stop()));
  loads.clear();
  for (const orchestrator of started) {
    if (orchestrator.child.exitCode === null && orchestrator.child.signalCode === null) orchestrator.child.kill('SIGKILL');
    await orchestrator.exited;
  }
  started.clear();
}

/** Kill a random container in rotation every `everyMs` for `durationMs` under load at concurrency 12. */
async function randomKills(cluster: DrillCluster, options: { durationMs: number; everyMs: number }): Promise<void> {
  const orchestrator = await startDrillOrchestrator(cluster);
  const load = drillLoad(orchestrator, 12);
  const killed: string[] = [];
  const deadline = Date.now() + options.durationMs;
  while (Date.now() < deadline) {
    // The pace of the kills is the drill itself: no condition to wait for.
    await sleep(options.everyMs);
    const candidates = (await liveStatus(orchestrator.url)).containers.filter(inRotation);
    const victim = candidates[Math.floor(Math.random() * candidates.length)];
    if (!victim?.runtimeId) continue;
    await cluster.kill(victim.runtimeId);
    killed.push(victim.id);
  }
  const outcomes = await load.stop();
  expectNoneLost(outcomes);
  // A kill is skipped only while nothing is in rotation; on a loaded machine a pass also takes longer than `everyMs`.
  expect(killed.length).toBeGreaterThanOrEqual(Math.floor(options.durationMs / options.everyMs / 2));
  expect(outcomes.model).toBeGreaterThan(0);
  const status = await expectSettled(cluster, orchestrator.url);
  // Requests that were on a killed container were sent again rather than lost.
  expect(status.counters?.redispatched).toBeGreaterThanOrEqual(1);
  expect(status.counters?.failed).toBe(0);
  await stopOrchestrator(orchestrator);
}

/**
 * Kill every container of one worker at once: the others carry the traffic, and all come back.
 * Under load, requests are in flight on the victims. Idle, the victims are still in rotation when
 * the load starts (no probe has failed yet), so a request may meet only dead containers first: it
 * must go on until a live one answers. It runs with `--max-attempts 2`: a worker's two containers
 * are then as many as a request's attempts, as three containers a worker are at the default of 3.
 */
async function workerWipedOut(cluster: DrillCluster, workerId: string, when: 'under load' | 'idle'): Promise<void> {
  const orchestrator = await startDrillOrchestrator(cluster, when === 'idle' ? ['--max-attempts', '2'] : []);
  const before = await liveStatus(orchestrator.url);
  const victims = before.containers.filter((c) => c.workerId === workerId);
  expect(victims.length).toBeGreaterThan(0);
  const kill = () => Promise.all(victims.map((c) => cluster.kill(c.runtimeId!)));
  let load: ClientLoad;
  if (when === 'under load') {
    load = drillLoad(orchestrator, 8);
    // The load reaches every victim before they die.
    await waitFor(() => victims.every((v) => (load.outcomes.servedBy[v.id] ?? 0) > 0), 30_000, `load on every container of ${workerId}`);
    await kill();
  } else {
    await kill();
    load = drillLoad(orchestrator, 1);
  }
  const answeredAtKill = load.outcomes.model;
  // Load runs on until every victim is back.
  const status = await poll(async () => {
    const live = await liveStatus(orchestrator.url);
    return victims.every((v) => live.containers.find((c) => c.id === v.id && c.runtimeId !== v.runtimeId && inRotation(c))) ? live : undefined;
  }, `every container of ${workerId} replaced`, 60_000);
  const outcomes = await load.stop();
  expectNoneLost(outcomes);
  expect(outcomes.model).toBeGreaterThan(answeredAtKill);
  expect(status.counters?.failed).toBe(0);
  expect(status.workers.find((w) => w.id === workerId)?.state).toBe('up');
  await expectSettled(cluster, orchestrator.url);
  await stopOrchestrator(orchestrator);
}

/** A container whose /run_model hangs while its /health answers: timed out, redispatched, taken out and replaced. */
async function hangingContainer(cluster: DrillCluster): Promise<void> {
  const orchestrator = await startDrillOrchestrator(cluster);
  const victim = (await liveStatus(orchestrator.url)).containers[0]!;
  await injectFault(victim, { mode: 'hang' });
  const load = drillLoad(orchestrator, 8);
  const replaced = await poll(async () => {
    const c = (await liveStatus(orchestrator.url)).containers.find((c) => c.id === victim.id);
    return c && c.runtimeId !== victim.runtimeId && inRotation(c) ? c : undefined;
  }, `${victim.id} replaced`, 60_000);
  const outcomes = await load.stop();
  expectNoneLost(outcomes);
  expect(outcomes.errors).toEqual({});
  expect(replaced.history.map((h) => h.reason)).toEqual(expect.arrayContaining([expect.stringMatching(/no answer within 3000 ms/)]));
  const status = await expectSettled(cluster, orchestrator.url);
  expect(status.counters?.redispatched).toBeGreaterThanOrEqual(1);
  await stopOrchestrator(orchestrator);
}

const SLOW_FOR_MS = 5_000;

/** A container slow for a while, under its probe timeout, then well: it never leaves the rotation. */
async function slowThenRecovering(cluster: DrillCluster): Promise<void> {
  const orchestrator = await startDrillOrchestrator(cluster);
  const victim = (await liveStatus(orchestrator.url)).containers[0]!;
  const load = drillLoad(orchestrator, 8);
  await injectFault(victim, { mode: 'slow', delayMs: 500, forMs: SLOW_FOR_MS });
  // The load must span the whole slow spell, the behaviour under test; the container announces its end to no one.
  await sleep(SLOW_FOR_MS);
  // Then the victim, well again, serves at its usual pace.
  const servedAtEnd = load.outcomes.servedBy[victim.id] ?? 0;
  await waitFor(() => (load.outcomes.servedBy[victim.id] ?? 0) >= servedAtEnd + 20, 30_000, `${victim.id} serving again`);
  const outcomes = await load.stop();
  expectNoneLost(outcomes);
  expect(outcomes.errors).toEqual({});
  const after = (await liveStatus(orchestrator.url)).containers.find((c) => c.id === victim.id)!;
  // No flapping: not one change of health while it was slow, and the same process throughout.
  expect(after.history).toEqual(victim.history);
  expect(after).toMatchObject({ runtimeId: victim.runtimeId, state: 'free', restarts: victim.restarts });
  expect(outcomes.servedBy[victim.id]).toBeGreaterThan(0);
  await expectSettled(cluster, orchestrator.url);
  await stopOrchestrator(orchestrator);
}

/** SIGTERM under load: everything the orchestrator took in is answered; what came after is refused, not dropped. */
async function sigtermUnderLoad(cluster: DrillCluster): Promise<void> {
  const orchestrator = await startDrillOrchestrator(cluster);
  const load = drillLoad(orchestrator, 16);
  // Stopped in full flow, with requests running and queued.
  await modelAnswers(load, 200);
  orchestrator.child.kill('SIGTERM');
  expect(await orchestrator.exited).toBe(0);
  const outcomes = await load.stop();
  const recorded = await readState(cluster.statePath);
  expect(recorded.orchestrator?.running).toBe(false);
  // Every request it read was answered to its client: the model's answers it counted all arrived ...
  expect(outcomes.model).toBe(recorded.counters?.completed);
  // ... and the rest of what it read got 503 SHUTTING_DOWN.
  expect(Object.keys(outcomes.errors).filter((code) => code !== 'SHUTTING_DOWN')).toEqual([]);
  expect(recorded.counters?.accepted).toBe(outcomes.model + (outcomes.errors.SHUTTING_DOWN ?? 0));
  // What it never read found the port closed (or its idle connection closed first): refused, never half-served.
  expect(outcomes.unanswered.TIMEOUT).toBeUndefined();
  expect(outcomes.unexpected).toEqual({});
}

/** SIGKILL under load: the status file is whole, and a restart finds every container again, starting none twice. */
async function sigkillThenRestart(cluster: DrillCluster): Promise<void> {
  const first = await startDrillOrchestrator(cluster);
  const before = await liveStatus(first.url);
  const load = drillLoad(first, 16);
  // Killed in full flow.
  await modelAnswers(load, 200);
  first.child.kill('SIGKILL');
  await first.exited;
  await load.stop();

  const recorded = await readState(cluster.statePath);
  expect(recorded.containers.map((c) => [c.id, c.runtimeId]).sort()).toEqual(before.containers.map((c) => [c.id, c.runtimeId]).sort());
  const second = await startDrillOrchestrator(cluster);
  const live = await liveStatus(second.url);
  expect(live.containers.map((c) => [c.id, c.runtimeId, c.state]).sort()).toEqual(before.containers.map((c) => [c.id, c.runtimeId, 'free']).sort());
  const after = drillLoad(second, 8);
  await waitFor(() => before.containers.every((c) => (after.outcomes.servedBy[c.id] ?? 0) > 0), 30_000, 'every container serving after the restart');
  const outcomes = await after.stop();
  expectNoneLost(outcomes);
  expect(outcomes.errors).toEqual({});
  await expectSettled(cluster, second.url);
  await stopOrchestrator(second);
}

/** The drills every runtime goes through, one test each, on the cluster `cluster()` returns (made in the file's beforeAll). */
export function describeDrills(runtime: string, cluster: () => DrillCluster): void {
  describe(`fault drills under load, on ${runtime}`, () => {
    it('a random container killed every 3 s for a minute: no request lost, every kill recovered', { timeout: 150_000 }, () =>
      randomKills(cluster(), { durationMs: 60_000, everyMs: 3_000 }));

    it('every container of a worker killed at once: the others carry the load, all are replaced', { timeout: 90_000 }, () =>
      workerWipedOut(cluster(), 'w1', 'under load'));

    it('every container of a worker killed while idle: requests go on past them to the live worker', { timeout: 90_000 }, () =>
      workerWipedOut(cluster(), 'w1', 'idle'));

    it('a container that hangs on /run_model but answers /health: timed out, redispatched, replaced', { timeout: 90_000 }, () => hangingContainer(cluster()));

    it('a container slow for 5 s, under its probe timeout: never leaves the rotation, no flapping', { timeout: 60_000 }, () => slowThenRecovering(cluster()));

    it('SIGTERM under load: every request read is answered, the rest refused', { timeout: 60_000 }, () => sigtermUnderLoad(cluster()));

    it('SIGKILL under load: the status file stays whole; a restart reconciles, starting nothing twice', { timeout: 60_000 }, () => sigkillThenRestart(cluster()));
  });
}

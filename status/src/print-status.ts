import { launchPhases } from './launch-phases.js';
import type { ContainerRecord, LaunchTiming, MachineScalerSnapshot, StateFile, WorkerRecord } from './schema.js';

/** Where a state was read: a running orchestrator's `GET /status`, or the state file. */
export type StatusSource = { kind: 'live'; url: string } | { kind: 'file'; path: string };

/** Longest last error shown in the containers table, in characters; the full text is in `--json`. */
const LAST_ERROR_WIDTH = 60;

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => row[i]!.length)));
  return [headers, ...rows].map((cells) => `  ${cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}`.trimEnd());
}

/** `3 s ago`, `4 min ago`...; empty when the time is unreadable or in the future (clock skew). */
function age(iso: string, now: Date): string {
  const ms = now.getTime() - Date.parse(iso);
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 60_000) return ` (${Math.round(ms / 1000)} s ago)`;
  if (ms < 3_600_000) return ` (${Math.round(ms / 60_000)} min ago)`;
  if (ms < 86_400_000) return ` (${Math.round(ms / 3_600_000)} h ago)`;
  return ` (${Math.round(ms / 86_400_000)} d ago)`;
}

function runtime(worker: WorkerRecord): string {
  const target = worker.runtime;
  if (target.driver === 'process') return 'process';
  return target.ssh ? `docker over ssh ${target.ssh.username}@${target.ssh.host}:${target.ssh.port}` : 'docker (local)';
}

/** The text on one line. */
const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/** One line, at most LAST_ERROR_WIDTH characters. */
function shortError(error: string | null): string {
  if (error === null) return '-';
  const line = oneLine(error);
  return line.length > LAST_ERROR_WIDTH ? `${line.slice(0, LAST_ERROR_WIDTH - 1)}…` : line;
}

/** Whole seconds from `now` to `iso`, rounded up; null when it is not in the future (or unreadable). */
function secondsUntil(iso: string | null, now: Date): number | null {
  const ms = iso ? Date.parse(iso) - now.getTime() : NaN;
  return ms > 0 ? Math.ceil(ms / 1000) : null;
}

function orchestratorLine(orchestrator: StateFile['orchestrator']): string {
  if (orchestrator === null) return 'orchestrator  none has run';
  const how = orchestrator.running ? 'running' : 'stopped';
  return `orchestrator  ${how}, pid ${orchestrator.pid}, ${orchestrator.url}, started ${orchestrator.startedAt}`;
}

function workerRows(state: StateFile): string[][] {
  return state.workers.map((worker) => [
    worker.id,
    worker.provider,
    worker.host,
    worker.state,
    worker.launchedBy,
    String(state.containers.filter((c) => c.workerId === worker.id).length),
    runtime(worker),
  ]);
}

/** `2`, or `2, next in 8 s` while a crash loop backs off. */
function restarts(c: ContainerRecord, now: Date): string {
  const wait = secondsUntil(c.nextRestartAt, now);
  return wait === null ? String(c.restarts) : `${c.restarts}, next in ${wait} s`;
}

function containerRows(containers: ContainerRecord[], now: Date): string[][] {
  return containers.map((c) => [
    c.id,
    c.workerId,
    `${c.host}:${c.port}`,
    c.state,
    `${c.inFlight}/${c.limit}`,
    String(c.served),
    restarts(c, now),
    shortError(c.lastError),
  ]);
}

/** Decisions shown by `npm run status`; all are in `--json`. */
const DECISIONS_SHOWN = 5;

function autoscalerLines(autoscaler: StateFile['autoscaler']): string[] {
  if (autoscaler === null) return ['autoscaler  (no orchestrator has reported one)'];
  const head = `autoscaler  ${autoscaler.policy}${autoscaler.paused ? ' (paused)' : ''}, ${autoscaler.min} to ${autoscaler.max} containers`;
  const recent = autoscaler.decisions.slice(-DECISIONS_SHOWN).map((d) => `  ${d.at}  ${d.action} ${d.current} -> ${d.desired}  ${d.reason}`);
  return [head, ...recent];
}

/** `decision 1.5 s, launch 2.3 s, start 3.0 s, probe 0.1 s` (no decision for a launch no need asked for). */
function launchBreakdown(launch: LaunchTiming): string {
  return launchPhases(launch)
    .map(({ phase, ms }) => `${phase} ${(ms / 1000).toFixed(1)} s`)
    .join(', ');
}

/** The machine autoscaler: bounds and workers, those launching or releasing, the back-off, the last launch and the latest decisions. */
function machinesLines(machines: MachineScalerSnapshot, workers: WorkerRecord[], now: Date): string[] {
  const inState = (state: WorkerRecord['state']) => workers.filter((w) => w.state === state).length;
  const down = inState('down');
  const c = machines.counts;
  const lines = [
    `machines  ${machines.provider}${machines.paused ? ' (paused)' : ''}, ${machines.minWorkers} to ${machines.maxWorkers} workers: ` +
      `${inState('up')} up, ${inState('draining')} draining, ${machines.launching.length} launching${down ? `, ${down} down` : ''}`,
    `  since the start: launched ${c.launched}, launch failed ${c.launchFailed}, adopted ${c.adopted}, released ${c.released}, release failed ${c.releaseFailed}`,
    ...machines.launching.map((e) => `  launching ${e.workerId} since ${e.since}${age(e.since, now)}  ${e.reason}`),
    ...machines.releasing.map((e) => `  releasing ${e.workerId} since ${e.since}${age(e.since, now)}  ${e.reason}`),
  ];
  if (machines.failures > 0) {
    const wait = secondsUntil(machines.backoffUntil, now);
    lines.push(`  back-off: ${machines.failures} launch${machines.failures === 1 ? '' : 'es'} failed in a row${wait === null ? '' : `, next in ${wait} s`}`);
  }
  if (machines.lastError !== null) lines.push(`  last error: ${oneLine(machines.lastError)}`);
  const last = machines.launches.at(-1);
  if (last) lines.push(`  last launch ${last.workerId}: ${launchBreakdown(last)}`);
  lines.push(...machines.decisions.slice(-DECISIONS_SHOWN).map((d) => `  ${d.at}  ${d.action} ${d.workerId ?? '-'} (${d.workers} worker${d.workers === 1 ? '' : 's'})  ${d.reason}`));
  return lines;
}

/** The cluster as a readable text: header, orchestrator, workers, containers, queue, counters, autoscaler and machine autoscaler (when one runs); ends with a newline. */
export function formatStatus(state: StateFile, source: StatusSource, now: Date = new Date()): string {
  const from = source.kind === 'live' ? `live orchestrator ${source.url}` : `file ${source.path} (written by ${state.writer})`;
  const lines = [`cluster ${state.cluster}  source: ${from}, updated ${state.updatedAt}${age(state.updatedAt, now)}`, orchestratorLine(state.orchestrator), ''];

  lines.push(`workers (${state.workers.length})`);
  if (state.workers.length === 0) lines.push('  (none)');
  else lines.push(...table(['ID', 'PROVIDER', 'HOST', 'STATE', 'LAUNCHED BY', 'CONTAINERS', 'RUNTIME'], workerRows(state)));
  lines.push('');

  const busy = state.containers.filter((c) => c.state === 'busy').length;
  lines.push(`containers (${state.containers.length}, ${busy} busy)`);
  if (state.containers.length === 0) lines.push('  (none)');
  else lines.push(...table(['ID', 'WORKER', 'ADDRESS', 'STATE', 'IN FLIGHT', 'SERVED', 'RESTARTS', 'LAST ERROR'], containerRows(state.containers, now)));
  lines.push('');

  const queue = state.queue;
  lines.push(queue ? `queue     ${queue.length}/${queue.capacity} waiting, oldest ${Math.round(queue.oldestWaitMs)} ms` : 'queue     (no orchestrator has reported one)');
  const counters = state.counters;
  lines.push(
    counters
      ? `counters  accepted ${counters.accepted}, queued ${counters.queued}, completed ${counters.completed}, failed ${counters.failed}, ` +
          `rejected ${counters.rejected}, timed out ${counters.timedOut}, cancelled ${counters.cancelled}, refused ${counters.refused}, redispatched ${counters.redispatched}`
      : 'counters  (none yet)',
  );
  lines.push(...autoscalerLines(state.autoscaler));
  if (state.machines) lines.push('', ...machinesLines(state.machines, state.workers, now));
  return `${lines.join('\n')}\n`;
}

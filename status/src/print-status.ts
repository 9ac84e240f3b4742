import type { ContainerRecord, StateFile, WorkerRecord } from './schema.js';

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

/** One line, at most LAST_ERROR_WIDTH characters. */
function shortError(error: string | null): string {
  if (error === null) return '-';
  const line = error.replace(/\s+/g, ' ').trim();
  return line.length > LAST_ERROR_WIDTH ? `${line.slice(0, LAST_ERROR_WIDTH - 1)}…` : line;
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
    String(state.containers.filter((c) => c.workerId === worker.id).length),
    runtime(worker),
  ]);
}

/** `2`, or `2, next in 8 s` while a crash loop backs off. */
function restarts(c: ContainerRecord, now: Date): string {
  const wait = c.nextRestartAt ? Date.parse(c.nextRestartAt) - now.getTime() : NaN;
  return wait > 0 ? `${c.restarts}, next in ${Math.ceil(wait / 1000)} s` : String(c.restarts);
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

/** The cluster as a readable text: header, orchestrator, workers, containers, queue and counters; ends with a newline. */
export function formatStatus(state: StateFile, source: StatusSource, now: Date = new Date()): string {
  const from = source.kind === 'live' ? `live orchestrator ${source.url}` : `file ${source.path} (written by ${state.writer})`;
  const lines = [`cluster ${state.cluster}  source: ${from}, updated ${state.updatedAt}${age(state.updatedAt, now)}`, orchestratorLine(state.orchestrator), ''];

  lines.push(`workers (${state.workers.length})`);
  if (state.workers.length === 0) lines.push('  (none)');
  else lines.push(...table(['ID', 'PROVIDER', 'HOST', 'STATE', 'CONTAINERS', 'RUNTIME'], workerRows(state)));
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
  return `${lines.join('\n')}\n`;
}

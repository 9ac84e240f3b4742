import type { ProvisionReport, TeardownReport } from './commands.js';
import type { Handover } from './handover.js';

/** A human summary of a provision run: one row per container, then the next step. */
export function formatProvisionReport(report: ProvisionReport): string {
  const rows = report.containers.map((container) => {
    const host = container.host.includes(':') ? `[${container.host}]` : container.host;
    const action = report.kept.includes(container.id) ? 'kept' : report.removed.includes(container.id) ? 'replaced' : 'started';
    return [container.id, container.workerId, `http://${host}:${container.port}`, container.runtimeId ? shortRuntimeId(container.runtimeId) : '-', action];
  });
  const lines = [
    `cluster "${report.cluster}": ${report.workers.length} workers, ${report.containers.length} containers healthy ` +
      `(${report.started.length} started, ${report.kept.length} kept${report.removed.length ? `, ${report.removed.length} removed` : ''})`,
    '',
    ...table(['CONTAINER', 'WORKER', 'URL', 'RUNTIME ID', 'ACTION'], rows),
    '',
    ...(report.handover ? handoverLines(report.handover) : [`inventory written to ${report.statePath}`, ...nextSteps(report)]),
  ];
  return lines.join('\n') + '\n';
}

/** Where to go from a cluster this run recorded. */
function nextSteps(report: ProvisionReport): string[] {
  if (!report.orchestrator) return ['next: npm start'];
  return [
    `orchestrator: ${report.orchestrator.url} (instance ${report.orchestrator.instanceId}), the workers at their private addresses`,
    `next: npm run status -- --file ${report.statePath}; npm run load -- --url ${report.orchestrator.url}/new_request`,
  ];
}

/** A human summary of a teardown run. */
export function formatTeardownReport(report: TeardownReport): string {
  const lines = [
    report.worker
      ? `cluster "${report.cluster}": released worker ${report.worker}${report.stopped.length > 0 ? ` (${report.stopped.join(', ')})` : ''}`
      : report.stopped.length === 0
        ? `cluster "${report.cluster}": nothing was running`
        : `cluster "${report.cluster}": stopped ${report.stopped.length} containers (${report.stopped.join(', ')})`,
  ];
  if (report.unknown.length > 0) lines.push(`not stopped, unknown to the runtime: ${report.unknown.join(', ')}`);
  if (report.handover) lines.push(...handoverLines(report.handover));
  else lines.push(report.worker ? `worker ${report.worker} removed from ${report.statePath}` : `inventory cleared in ${report.statePath}`);
  return lines.join('\n') + '\n';
}

/** What the running orchestrator was asked to do, and that the state file is its to write. */
function handoverLines(handover: Handover): string[] {
  const { orchestrator, added, removed, autoscalers } = handover;
  const changes = [added.length > 0 ? `added ${added.join(', ')}` : '', removed.length > 0 ? `drained and released ${removed.join(', ')}` : ''].filter(Boolean);
  return [
    `handed to the orchestrator (pid ${orchestrator.pid}, ${orchestrator.url}), which owns the inventory while it runs: ${changes.join('; ') || 'nothing to change'}`,
    ...(autoscalers.length > 0 ? [`left to its machine autoscaler, which launched them: ${autoscalers.join(', ')}`] : []),
    'the state file is its to write: this run did not touch it',
  ];
}

/** Docker ids are 64 hex digits; the 12 that `docker ps` shows are enough to find one. */
function shortRuntimeId(runtimeId: string): string {
  return /^[0-9a-f]{64}$/.test(runtimeId) ? runtimeId.slice(0, 12) : runtimeId;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows].map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

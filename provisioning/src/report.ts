import type { ProvisionReport, TeardownReport } from './commands.js';

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
    `inventory written to ${report.statePath}`,
    ...(report.orchestrator
      ? [
          `orchestrator: ${report.orchestrator.url} (instance ${report.orchestrator.instanceId}), the workers at their private addresses`,
          `next: npm run status -- --file ${report.statePath}; npm run load -- --url ${report.orchestrator.url}/new_request`,
        ]
      : ['next: npm start']),
  ];
  return lines.join('\n') + '\n';
}

/** A human summary of a teardown run. */
export function formatTeardownReport(report: TeardownReport): string {
  const lines = [
    report.stopped.length === 0
      ? `cluster "${report.cluster}": nothing was running`
      : `cluster "${report.cluster}": stopped ${report.stopped.length} containers (${report.stopped.join(', ')})`,
  ];
  if (report.unknown.length > 0) lines.push(`not stopped, unknown to the runtime: ${report.unknown.join(', ')}`);
  lines.push(`inventory cleared in ${report.statePath}`);
  return lines.join('\n') + '\n';
}

/** Docker ids are 64 hex digits; the 12 that `docker ps` shows are enough to find one. */
function shortRuntimeId(runtimeId: string): string {
  return /^[0-9a-f]{64}$/.test(runtimeId) ? runtimeId.slice(0, 12) : runtimeId;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows].map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

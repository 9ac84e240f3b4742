import { spreadOf } from './spread.js';

/** Where one round's time went, in ms, in order; together they make its total (within the tolerance). */
export interface MachineParts {
  /** From the load starting to the machine autoscaler seeing containers the container autoscaler wants fit on no worker (its `needSince`). */
  autoscalerMs: number;
  /** From that need to the launch being asked for (the machine autoscaler's pass, cooldowns, back-off). */
  decisionMs: number;
  /** From the launch asked for to the compose project's containers running. */
  launchMs: number;
  /** From running to every container of it answering its health path. */
  startMs: number;
  /** From healthy to in rotation: the orchestrator's own first probe of each. */
  probeMs: number;
  /** From in rotation (the `launched` decision) to the first answer a container of the new worker gave the client: dispatch and one request. */
  dispatchMs: number;
}

/** One round: from the load starting to the first answer of a container on the worker the machine autoscaler launched. */
export interface MachineRound {
  /** When the load started (ISO). */
  startedAt: string;
  /** The machine's 1-minute load average as the load started: other work on the same cores. */
  loadAverage: number;
  /** The new worker, and its container that answered first. */
  workerId: string;
  servedBy: string;
  totalMs: number;
  parts: MachineParts;
  /** The total less the parts: what no part accounts for. */
  unaccountedMs: number;
  /** One `compose version` right after t1: the compose program's own start-up, part of every launch. */
  composeVersionMs: number;
}

/** The machine autoscaler on the Docker runtime: rounds from one full worker to a second one answering. */
export interface MachinesResult {
  /** When it ran (`npm run bench -- --only machines` runs it apart from the rest). */
  date: string;
  /** The worker image the compose projects run, and its short id. */
  image: { tag: string; id: string };
  /** The Docker engine's version, and the compose program provisioning runs (`docker compose` or `docker-compose`) with its version. */
  docker: { engine: string; compose: string };
  /** The containers' simulated inference time (WORK_MS), in ms. */
  workMs: number;
  /** Requests the client keeps in flight. */
  concurrency: number;
  /** How far the parts may miss the total before the run fails, in ms. */
  toleranceMs: number;
  /** The orchestrator's settings that decide the scaling, as run. */
  config: {
    autoscalePolicy: string;
    scaleIntervalMs: number;
    minContainers: number;
    maxContainers: number;
    maxContainersPerWorker: number;
    minWorkers: number;
    maxWorkers: number;
    targetConcurrency: number;
    scaleUpCooldownMs: number;
    workerScaleUpCooldownMs: number;
    workerSurplusMs: number;
  };
  rounds: MachineRound[];
}

/** The parts as the report names them, in order. */
const PARTS: Array<[keyof MachineParts, string]> = [
  ['autoscalerMs', "container autoscaler's pass"],
  ['decisionMs', 'decision'],
  ['launchMs', 'launch'],
  ['startMs', 'start'],
  ['probeMs', 'first probe'],
  ['dispatchMs', 'dispatch'],
];

const ms = (n: number): string => `${Math.round(n).toLocaleString('en-US')}`;
const median = (values: number[]): number => spreadOf(values).median;

/** docs/BENCHMARKS.md's section on the machine autoscaler; "not measured" when the last runs had no `machines` scenario. */
export function machinesSection(m: MachinesResult | undefined, cores: number): string[] {
  const title = '## Machine autoscaling: from a full worker to a new one answering (Docker)';
  if (!m) return [title, '', 'Not measured: run `npm run bench -- --only machines` (Docker engine, about 3 minutes).', ''];
  const c = m.config;
  const total = median(m.rounds.map((r) => r.totalMs));
  const medians = PARTS.map(([key, name]) => ({ name, value: median(m.rounds.map((r) => r.parts[key])) }));
  const [top, second] = [...medians].sort((a, b) => b.value - a.value) as [(typeof medians)[0], (typeof medians)[0]];
  const load = median(m.rounds.map((r) => r.loadAverage));
  const composeMs = median(m.rounds.map((r) => r.composeVersionMs));
  const row = (label: string, totalMs: number, values: number[], unaccounted: string, loadAverage: number, composeVersionMs: number): string =>
    `| ${label} | **${ms(totalMs)}** | ${values.map(ms).join(' | ')} | ${unaccounted} | ${loadAverage.toFixed(1)} | ${ms(composeVersionMs)} |`;
  return [
    title,
    '',
    `Run on ${m.date}. Each of ${m.rounds.length} rounds provisions a cluster of one worker, w1, as a user does (\`npm run provision -- --runtime docker --workers 1\`:`,
    `a compose project of docker-compose.worker.yml, 2 containers of \`${m.image.tag}\` (image ${m.image.id}) with WORK_MS=${m.workMs}), starts the compiled orchestrator`,
    `over it with a machine autoscaler, and starts a client of its own (undici, ${m.concurrency} loops each POSTing one request after another): ${m.concurrency} requests`,
    `at once against w1's 2 containers, which hold at most ${c.maxContainersPerWorker}. The round ends at the first answer whose \`X-Served-By\` is a container of the`,
    'worker the machine autoscaler launched for it (w2); then the load stops, the orchestrator stops and `npm run teardown` removes both compose',
    `projects (the round fails if any container of the cluster is left). Docker ${m.docker.engine}, compose as provisioning runs it: \`${m.docker.compose}\`.`,
    `The orchestrator, the client, the engine and the containers share the same ${cores} cores.`,
    '',
    `Settings: \`--autoscale-policy ${c.autoscalePolicy}\` (target concurrency ${c.targetConcurrency} per container), \`--scale-interval-ms ${c.scaleIntervalMs}\` (both autoscalers pass once a second),`,
    `\`--min-containers ${c.minContainers}\`, \`--max-containers ${c.maxContainers}\`, \`--max-containers-per-worker ${c.maxContainersPerWorker}\`, \`--min-workers ${c.minWorkers}\`, \`--max-workers ${c.maxWorkers}\`;`,
    `defaults otherwise (scale-up cooldown ${c.scaleUpCooldownMs} ms, worker scale-up cooldown ${c.workerScaleUpCooldownMs} ms, worker surplus ${c.workerSurplusMs} ms).`,
    '',
    'Where the time goes, from the load starting (t0) to that first answer (t1):',
    '',
    "- **container autoscaler's pass**: t0 to the machine autoscaler first seeing containers the container autoscaler wants fit on no worker",
    '  (`needSince` in `/status` → `machines.launches[]`; the round fails if it is before t0: w1 held everything until the load);',
    '- **decision**, **launch**, **start**, **first probe**: that launch\'s `decisionMs` (need to launch asked for), `launchMs` (to the compose',
    '  project\'s containers running: the engine listed for what runs already, `compose up -d` of the worker\'s project), `startMs` (to both',
    '  answering their health path: the containers\' own start) and `probeMs` (to in rotation here);',
    '- **dispatch**: from in rotation (the `at` of the `launched` decision in `/status`, read apart from the timing) to t1: a queued request',
    '  sent to the new container and its answer.',
    '',
    `The client's t0 and t1 and the orchestrator's times are read from the same clock. The parts must add up to t1 − t0 within ${m.toleranceMs} ms`,
    '(unaccounted: the total less the parts), or the run fails. Beside them, for what launch holds: the machine\'s 1-minute load average',
    'at t0 (other work on the same cores), and one `compose version` timed right after t1 (the compose program\'s own start, which every',
    'compose command of a launch pays).',
    '',
    `| round | t1 − t0, ms | ${PARTS.map(([, name]) => `${name}, ms`).join(' | ')} | unaccounted, ms | load average at t0 | one \`compose version\`, ms |`,
    `| --- | --- | ${PARTS.map(() => '---').join(' | ')} | --- | --- | --- |`,
    ...m.rounds.map((r, i) => row(String(i + 1), r.totalMs, PARTS.map(([key]) => r.parts[key]), ms(r.unaccountedMs), r.loadAverage, r.composeVersionMs)),
    row('median', total, medians.map((p) => p.value), '–', load, composeMs),
    '',
    `**${ms(total)} ms** from ${m.concurrency} requests queueing on a full worker to a container on a new worker answering (median of ${m.rounds.length}; medians per`,
    `column, so they need not add up). **${top.name}** dominates: ${ms(top.value)} ms, ${Math.round((top.value / total) * 100)}% of the total; then ${second.name},`,
    `${ms(second.value)} ms (${Math.round((second.value / total) * 100)}%).` +
      (load > cores
        ? ` The cores were oversubscribed (1-minute load average ${load.toFixed(1)} on ${cores} cores, median at t0, the previous round's teardown and any other work included): the engine, compose and the new containers got a share of them, so launch and start take longer here than on an idle machine.`
        : ''),
    '',
  ];
}

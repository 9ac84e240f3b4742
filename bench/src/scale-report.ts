import { spreadOf, spreadText } from './spread.js';

/** What the processes used and the backends saw over one measured window. */
export interface ScaleWindow {
  seconds: number;
  /** Requests the backends answered. */
  requests: number;
  /** Health probes the backends answered. */
  probes: number;
  /** Writes of the orchestrator's status file. */
  statusWrites: number;
  /** CPU time used, in ms: by the proxy under test (the orchestrator when none is: idle), the backend farm, the client (wrk), and the whole machine (all cores). */
  cpuMs: { proxy: number; farm: number; client: number; machine: number };
}

/** One wrk run of the scale scenario: through the orchestrator, through HAProxy, or on the `direct` backend serving every connection at once. */
export interface ScaleRun {
  target: 'orchestrator' | 'haproxy' | 'direct';
  throughputRps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** The backends' own mean service time, in ms. */
  meanServiceMs: number;
  /** The backends' mean wait from answering to receiving their next request, in ms: the proxy's hand-over (and the farm's own event-loop delay). */
  meanGapMs: number;
  /** Containers (direct: connections) / meanServiceMs. */
  limitRps: number;
  window: ScaleWindow;
}

/** Many containers on many workers behind one orchestrator, driven by wrk. */
export interface ScaleResult {
  /** When it ran (`npm run bench -- --only scale` runs it apart from the rest). */
  date: string;
  containers: number;
  workers: number;
  serviceMs: number;
  /** wrk's connections, each with one request in flight. */
  connections: number;
  /** The orchestrator's settings that bound its background work (its defaults, as run). */
  config: { healthIntervalMs: number; healthProbeConcurrency: number; statusWriteIntervalMs: number };
  /** No requests and no probes (another orchestrator, probing once an hour): the loops' timers alone. */
  unprobed: ScaleWindow;
  /** No requests: health probes and the loops' timers. */
  idle: ScaleWindow;
  /** A trickle of requests, each changing the pool, so the status file is written as often as it may be. */
  trickle: { requestsPerSecond: number; window: ScaleWindow };
  runs: ScaleRun[];
}

/** A target as the Targets table lists it. */
export interface Check {
  target: string;
  value: string;
  met: boolean;
}

const fmt = (n: number, digits = 0): string => n.toFixed(digits);
const thousands = (n: number): string => Math.round(n).toLocaleString('en-US');
const pct = (fraction: number, digits = 1): string => `${fmt(fraction * 100, digits)}%`;

/** Busy time outside the measured processes, in cores, past which the report warns that the machine was not to itself. */
const BUSY_ELSEWHERE_CORES = 0.25;

/** The throughput target: this close to the physical limit. */
const TARGET_FRACTION = 0.97;

/** CPU time the machine spent outside the three measured processes (other programs, and this harness); readings a tick apart can put it a little below 0. */
const othersMs = (w: ScaleWindow): number => Math.max(0, w.cpuMs.machine - w.cpuMs.proxy - w.cpuMs.farm - w.cpuMs.client);
const perRequestUs = (w: ScaleWindow, ms: number): number => (ms * 1000) / w.requests;

/** Everything the section and the checks say, computed once from the runs. */
function figuresOf(s: ScaleResult) {
  const through = s.runs.filter((r) => r.target === 'orchestrator');
  const haproxy = s.runs.filter((r) => r.target === 'haproxy');
  const direct = s.runs.filter((r) => r.target === 'direct');
  const med = (runs: readonly ScaleRun[], pick: (r: ScaleRun) => number): number => spreadOf(runs.map(pick)).median;
  const rate = (w: ScaleWindow, n: number): number => n / w.seconds;
  const nominalRps = (s.containers * 1000) / s.serviceMs;
  const orchestratorMsPerS = med(through, (r) => rate(r.window, r.window.cpuMs.proxy));
  const orchestratorUs = med(through, (r) => perRequestUs(r.window, r.window.cpuMs.proxy));
  // Idle, the probes cost what the orchestrator uses beyond its unprobed self.
  const idle = s.idle;
  const baseMsPerS = rate(s.unprobed, s.unprobed.cpuMs.proxy);
  const probeMs = (idle.cpuMs.proxy - baseMsPerS * idle.seconds) / idle.probes;
  // The trickle adds status writes, and its own requests at the per-request cost measured under load.
  const trickle = s.trickle.window;
  const writeMsMeasured = (trickle.cpuMs.proxy - baseMsPerS * trickle.seconds - trickle.probes * probeMs - (trickle.requests * orchestratorUs) / 1000) / trickle.statusWrites;
  // At or below 0 the writes were lost in the noise of the idle figure: counted as free, and said so.
  const writeMs = Math.max(0, writeMsMeasured);
  const probeBoundPerS = (s.containers * 1000) / s.config.healthIntervalMs;
  const writeBoundPerS = 1000 / s.config.statusWriteIntervalMs;
  const loadProbesPerS = med(through, (r) => rate(r.window, r.window.probes));
  const loadWritesPerS = med(through, (r) => rate(r.window, r.window.statusWrites));
  // Passes start at least healthIntervalMs apart, writes statusWriteIntervalMs apart: a window holds at most one more than its length allows.
  const withinBound = (w: ScaleWindow): boolean =>
    w.probes <= s.containers * ((w.seconds * 1000) / s.config.healthIntervalMs + 1) && w.statusWrites <= (w.seconds * 1000) / s.config.statusWriteIntervalMs + 1;
  return {
    through,
    haproxy,
    direct,
    med,
    rate,
    nominalRps,
    throughput: spreadOf(through.map((r) => r.throughputRps)),
    fraction: med(through, (r) => r.throughputRps / r.limitRps),
    haproxyFraction: med(haproxy, (r) => r.throughputRps / r.limitRps),
    limitRps: med(through, (r) => r.limitRps),
    serviceMs: med(through, (r) => r.meanServiceMs),
    directRps: med(direct, (r) => r.throughputRps),
    orchestratorMsPerS,
    orchestratorUs,
    probeMs,
    writeMs,
    writeMeasured: writeMsMeasured > 0,
    probeBoundPerS,
    writeBoundPerS,
    loadProbesPerS,
    loadWritesPerS,
    boundMsPerS: probeBoundPerS * probeMs + writeBoundPerS * writeMs,
    loadShare: (loadProbesPerS * probeMs + loadWritesPerS * writeMs) / orchestratorMsPerS,
    bounded: [s.unprobed, idle, trickle, ...through.map((r) => r.window)].every(withinBound),
  };
}

/** The scale scenario's rows of the Targets table. */
export function scaleChecks(s: ScaleResult): Check[] {
  const f = figuresOf(s);
  return [
    {
      target: `${s.containers} containers on ${s.workers} workers, S = ${s.serviceMs} ms: throughput ≥ ${pct(TARGET_FRACTION, 0)} of the physical limit`,
      value: `${pct(f.fraction)} of ${thousands(f.limitRps)} req/s (${pct(f.throughput.median / f.nominalRps)} of ${thousands(f.nominalRps)}); HAProxy: ${pct(f.haproxyFraction)}; no proxy: ${thousands(f.directRps)} req/s`,
      met: f.fraction >= TARGET_FRACTION,
    },
    {
      target: `${s.containers} containers: health probes and status writes within their bound`,
      value: `≤ ${fmt(f.probeBoundPerS)} probes/s, ≤ ${fmt(f.writeBoundPerS)} writes/s: ≤ ${fmt(f.boundMsPerS)} ms CPU per second; under load ${pct(f.loadShare)} of the orchestrator's CPU`,
      met: f.bounded,
    },
  ];
}

/** docs/BENCHMARKS.md's section on the scale scenario. */
export function scaleSection(s: ScaleResult, cores: number): string[] {
  const f = figuresOf(s);
  const rounds = f.through.length;
  const lines = [
    `## Scale: ${s.containers} containers on ${s.workers} workers, S = ${s.serviceMs} ms`,
    '',
    `Run on ${s.date}. The compiled orchestrator, with its default settings, starts from a state file listing ${s.workers} workers with ${s.containers / s.workers} unmanaged containers each:`,
    `${s.containers} emulated containers in one farm process (the same emulation as above: one request at a time, ${s.serviceMs} ms on a timer). The client is`,
    `\`wrk\` (C, one thread, a Lua script POSTing a small JSON body to \`/new_request\`) keeping ${s.connections} connections with one request each in flight:`,
    `more than the containers, so a container that answers finds its next request already queued. The physical limit is ${s.containers} / ${s.serviceMs} ms =`,
    `${thousands(f.nominalRps)} req/s; with the containers' own measured service time (a timer fires late when the cores are busy) it is ${s.containers} / that time.`,
    `Each of ${rounds} rounds, after a warm-up, runs wrk through the orchestrator, through HAProxy configured as above over the same ${s.containers}`,
    `containers (started for its runs only, so its health checks never count as the orchestrator's probes), then on one backend of the same`,
    `farm that serves all ${s.connections} connections at once (\`direct\`: no proxy, so the client's and the farm's own ceiling). CPU times`,
    `come from /proc over each run's middle seconds. wrk, the farm and the proxies share the same ${cores} cores.`,
    '',
    '| target | throughput, req/s (min / **median** / max) | physical limit, req/s (measured service time) | % of the limit | hand-over gap ms | p50 ms | p90 ms | p99 ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const targets = [
    ['orchestrator', f.through],
    ['haproxy', f.haproxy],
    ['direct (no proxy)', f.direct],
  ] as const;
  for (const [name, runs] of targets) {
    const m = (pick: (r: ScaleRun) => number, digits = 1): string => fmt(f.med(runs, pick), digits);
    lines.push(
      `| ${name} | ${spreadText(spreadOf(runs.map((r) => r.throughputRps)))} | ${thousands(f.med(runs, (r) => r.limitRps))} (${m((r) => r.meanServiceMs, 2)} ms) | ` +
        `${pct(f.med(runs, (r) => r.throughputRps / r.limitRps))} | ${name.startsWith('direct') ? '–' : m((r) => r.meanGapMs, 2)} | ${m((r) => r.latencyMs.p50)} | ${m((r) => r.latencyMs.p90)} | ${m((r) => r.latencyMs.p99)} |`,
    );
  }
  const met = f.fraction >= TARGET_FRACTION;
  // CPU per process: per request answered, and as a share of one core, median over the runs.
  const us = (runs: readonly ScaleRun[], pick: (w: ScaleWindow) => number): number => f.med(runs, (r) => perRequestUs(r.window, pick(r.window)));
  const core = (runs: readonly ScaleRun[], pick: (w: ScaleWindow) => number): number => f.med(runs, (r) => f.rate(r.window, pick(r.window)) / 1000);
  const processes: Array<[string, (w: ScaleWindow) => number]> = [
    ['proxy', (w) => w.cpuMs.proxy],
    ['backend farm', (w) => w.cpuMs.farm],
    ['client (wrk)', (w) => w.cpuMs.client],
    ['rest of the machine', othersMs],
  ];
  const split = processes.map(([name, pick]) => `${name === 'proxy' ? 'orchestrator' : name} ${fmt(core(f.through, pick), 2)}`).join(', ');
  const busyElsewhere = core(f.through, othersMs);
  const orchestratorAtNominal = (us(f.through, (w) => w.cpuMs.proxy) * f.nominalRps) / 1e6;
  const neededCores = (processes.slice(0, 3).reduce((n, [, pick]) => n + us(f.through, pick), 0) * f.nominalRps) / 1e6;
  lines.push(
    '',
    `**Throughput within ${pct(1 - TARGET_FRACTION, 0)} of the physical limit: ${met ? 'met' : 'not met'} on these ${cores} cores.** The orchestrator answered ` +
      `${thousands(f.throughput.median)} req/s, ${pct(f.fraction)} of the ${thousands(f.limitRps)} req/s the containers' measured service time of ` +
      `${fmt(f.serviceMs, 2)} ms allows (${pct(f.throughput.median / f.nominalRps)} of the nominal ${thousands(f.nominalRps)}; HAProxy, doing the same job here, ` +
      `${pct(f.haproxyFraction)} at ${fmt(us(f.haproxy, (w) => w.cpuMs.proxy))} µs of its CPU per request), while the machine was ` +
      `${pct(core(f.through, (w) => w.cpuMs.machine) / cores, 0)} busy (in cores: ${split}). At its CPU cost per request the orchestrator alone needs ` +
      `${pct(orchestratorAtNominal, 0)} of one core for ${thousands(f.nominalRps)} req/s (its requests run on one thread), and the orchestrator, the farm and ` +
      `the client together ${fmt(neededCores, 2)} of the ${cores} cores. The client is not the bottleneck: without a proxy the same wrk drove the same farm to ` +
      `${thousands(f.directRps)} req/s at ${fmt(us(f.direct, (w) => w.cpuMs.client))} µs of its CPU per request.` +
      (f.haproxyFraction < TARGET_FRACTION
        ? ` HAProxy falls short of ${pct(TARGET_FRACTION, 0)} too: its containers waited ${fmt(f.med(f.haproxy, (r) => r.meanGapMs), 2)} ms on average from answering to their next request ` +
          `(its hand-over, and the farm's own event loop serving all ${s.containers} containers in one process).`
        : '') +
      (busyElsewhere > BUSY_ELSEWHERE_CORES
        ? ` Other work held ${fmt(busyElsewhere, 2)} cores during these runs: the figures come from a busy machine, where each process gets less of the cores and spends more CPU per request.`
        : ''),
    '',
    '### Where the CPU goes',
    '',
    'Medians over the runs, from /proc: CPU time per request the backends answered in the same window, and as a share of one core.',
    '"Rest of the machine" is busy time outside the three processes: this harness, the kernel\'s own threads, anything else running.',
    '',
    '| process | through the orchestrator: µs per request | % of one core | through HAProxy: µs per request | % of one core | direct: µs per request | % of one core |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...processes.map(
      ([name, pick]) =>
        `| ${name === 'proxy' ? 'proxy (direct: the idle orchestrator)' : name} | ` +
        targets.map(([target, runs]) => `${name === 'rest of the machine' || (name === 'proxy' && target !== 'orchestrator' && target !== 'haproxy') ? '–' : fmt(us(runs, pick))} | ${pct(core(runs, pick), 0)}`).join(' | ') +
        ' |',
    ),
    `| whole machine (${cores} cores) | ${targets.map(([, runs]) => `– | ${pct(core(runs, (w) => w.cpuMs.machine), 0)}`).join(' | ')} |`,
    '',
    '### Background work: health probes and status writes',
    '',
    `The orchestrator probes every container once a pass, passes ${s.config.healthIntervalMs} ms apart (healthIntervalMs), at most ${s.config.healthProbeConcurrency} probes in flight`,
    `(healthProbeConcurrency), and writes the status file at most every ${s.config.statusWriteIntervalMs} ms (statusWriteIntervalMs), only when something changed.`,
    `Idle, nothing changes; a trickle of ${s.trickle.requestsPerSecond} requests per second (sent one at a time) changes the pool often enough for a write at every chance.`,
    'What an orchestrator costs with neither is measured on a second one, started the same way but probing once an hour.',
    '',
    '| phase | requests/s | probes/s | status writes/s | orchestrator CPU, ms per second |',
    '| --- | --- | --- | --- | --- |',
  );
  const phase = (name: string, w: ScaleWindow): string =>
    `| ${name} | ${fmt(f.rate(w, w.requests))} | ${fmt(f.rate(w, w.probes))} | ${fmt(f.rate(w, w.statusWrites), 1)} | ${fmt(f.rate(w, w.cpuMs.proxy), 1)} |`;
  lines.push(
    phase('idle, not probing', s.unprobed),
    phase('idle', s.idle),
    phase(`idle, ${s.trickle.requestsPerSecond} requests/s`, s.trickle.window),
    `| under load (median of ${rounds}) | ${thousands(f.throughput.median)} | ${fmt(f.loadProbesPerS)} | ${fmt(f.loadWritesPerS, 1)} | ${fmt(f.orchestratorMsPerS, 1)} |`,
    '',
    `One probe costs ${fmt(f.probeMs, 3)} ms of the orchestrator's CPU (its idle CPU less the unprobed one's, over its probes); ` +
      (f.writeMeasured
        ? `one status write ${fmt(f.writeMs, 2)} ms (the trickle's CPU less the unprobed one's, its probes, and its requests at the per-request cost under load, over its writes).`
        : `a status write too little to tell from the noise here (the trickle's CPU less the unprobed one's, its probes, and its requests at the per-request cost under load, was not above 0): counted as 0.`),
    `**The bound**: at most ${fmt(f.probeBoundPerS)} probes (${s.containers} containers × 1000 / ${s.config.healthIntervalMs}) and ${fmt(f.writeBoundPerS)} writes (1000 / ${s.config.statusWriteIntervalMs}) per second,`,
    `whatever the load: at most ${fmt(f.boundMsPerS)} ms of CPU per second, ${pct(f.boundMsPerS / 1000)} of one core. Under load, at the rates measured, that work was`,
    `**${pct(f.loadShare)} of the orchestrator's CPU**.`,
    '',
  );
  return lines;
}

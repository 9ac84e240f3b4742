import { describe, expect, it } from 'vitest';
import { MachinesAccountingError, roundOf, type MachineObservation } from '../../bench/src/machines.js';
import { machinesSection, type MachineRound, type MachinesResult } from '../../bench/src/machines-report.js';
import type { StateFile } from '../../status/src/schema.js';

const T0 = Date.parse('2026-11-30T10:00:00.000Z');
const iso = (afterT0Ms: number): string => new Date(T0 + afterT0Ms).toISOString();

/**
 * A round as the bench sees it: the load at T0, the need seen 1,200 ms later, then 800 ms of
 * decision, 2,500 of launch, 600 of start, 40 of probe; in rotation at 5,140 ms (the `launched`
 * decision), answered at `answeredAt`.
 */
function observation(answeredAt = 5_200, servedBy = 'w2-c1'): MachineObservation {
  const status = {
    containers: [
      { id: 'w1-c1', workerId: 'w1' },
      { id: 'w1-c2', workerId: 'w1' },
      { id: 'w2-c1', workerId: 'w2' },
      { id: 'w2-c2', workerId: 'w2' },
    ],
    machines: {
      launches: [{ workerId: 'w2', needSince: iso(1_200), decisionMs: 800, launchMs: 2_500, startMs: 600, probeMs: 40 }],
      decisions: [
        { at: iso(2_000), action: 'launch', workerId: 'w2', workers: 1, reason: '2 container(s) the autoscaler wants fit on no worker' },
        { at: iso(5_140), action: 'launched', workerId: 'w2', workers: 2, reason: '2 container(s) the autoscaler wants fit on no worker' },
      ],
    },
  } as unknown as StateFile;
  return { loadStartedAt: T0, firstAnswerAt: T0 + answeredAt, servedBy, loadAverage: 1.5, status };
}

function round(parts: [number, number, number, number, number, number], unaccountedMs = 0, loadAverage = 1.2, composeVersionMs = 700): MachineRound {
  const [autoscalerMs, decisionMs, launchMs, startMs, probeMs, dispatchMs] = parts;
  const totalMs = parts.reduce((a, b) => a + b, 0) + unaccountedMs;
  return { startedAt: iso(0), loadAverage, workerId: 'w2', servedBy: 'w2-c1', totalMs, parts: { autoscalerMs, decisionMs, launchMs, startMs, probeMs, dispatchMs }, unaccountedMs, composeVersionMs };
}

const result = (): MachinesResult => ({
  date: '2026-11-30T10:05:00.000Z',
  image: { tag: 'inference-worker:latest', id: '0123456789ab' },
  docker: { engine: '20.10.24', compose: 'docker-compose 1.29.2' },
  workMs: 50,
  concurrency: 16,
  toleranceMs: 5,
  config: {
    autoscalePolicy: 'concurrency',
    scaleIntervalMs: 1_000,
    minContainers: 2,
    maxContainers: 4,
    maxContainersPerWorker: 2,
    minWorkers: 1,
    maxWorkers: 2,
    targetConcurrency: 1,
    scaleUpCooldownMs: 0,
    workerScaleUpCooldownMs: 0,
    workerSurplusMs: 60_000,
  },
  rounds: [round([1_200, 800, 2_500, 600, 40, 60]), round([900, 1_000, 3_100, 500, 35, 55], 1, 0.8, 1_400), round([1_100, 950, 2_700, 700, 45, 70], -2, 1.9, 650)],
});

describe('a round of the machines scenario', () => {
  it('splits the time from the load to the new worker answering into its parts, which add up to it', () => {
    expect(roundOf(observation())).toEqual({
      startedAt: iso(0),
      loadAverage: 1.5,
      workerId: 'w2',
      servedBy: 'w2-c1',
      totalMs: 5_200,
      parts: { autoscalerMs: 1_200, decisionMs: 800, launchMs: 2_500, startMs: 600, probeMs: 40, dispatchMs: 60 },
      unaccountedMs: 0,
    });
  });

  it('fails when the launch timing misses time the launched decision shows passed', () => {
    const o = observation();
    // A launch 20 ms longer than its timing says: the decisions and the timing disagree.
    o.status.machines!.decisions[1]!.at = iso(5_160);
    expect(() => roundOf(o)).toThrow(MachinesAccountingError);
    // Within the tolerance, it holds.
    o.status.machines!.decisions[1]!.at = iso(5_143);
    expect(roundOf(o).unaccountedMs).toBe(3);
  });

  it('fails when the need predates the load, or the first answer came from w1', () => {
    const early = observation();
    // Seen 100 ms before the load, the parts still adding up.
    Object.assign(early.status.machines!.launches[0]!, { needSince: iso(-100), decisionMs: 2_100 });
    expect(() => roundOf(early)).toThrow(expect.objectContaining({ code: 'BENCH_MACHINES_ACCOUNTING' }));
    expect(() => roundOf(observation(5_200, 'w1-c2'))).toThrow(MachinesAccountingError);
    const noTiming = observation();
    noTiming.status.machines!.launches = [];
    expect(() => roundOf(noTiming)).toThrow(MachinesAccountingError);
  });
});

describe('the machines section of the report', () => {
  it('states the settings, each round and the median of every part, and what dominates', () => {
    const text = machinesSection(result(), 2).join('\n');
    expect(text).toContain('`--autoscale-policy concurrency` (target concurrency 1 per container), `--scale-interval-ms 1000`');
    expect(text).toContain('`--max-containers-per-worker 2`, `--min-workers 1`, `--max-workers 2`');
    expect(text).toContain('worker surplus 60000 ms');
    expect(text).toContain('Docker 20.10.24, compose as provisioning runs it: `docker-compose 1.29.2`.');
    expect(text).toContain("| round | t1 − t0, ms | container autoscaler's pass, ms | decision, ms | launch, ms | start, ms | first probe, ms | dispatch, ms | unaccounted, ms | load average at t0 | one `compose version`, ms |");
    expect(text).toContain('| 1 | **5,200** | 1,200 | 800 | 2,500 | 600 | 40 | 60 | 0 | 1.2 | 700 |');
    expect(text).toContain('| 2 | **5,591** | 900 | 1,000 | 3,100 | 500 | 35 | 55 | 1 | 0.8 | 1,400 |');
    expect(text).toContain('| 3 | **5,563** | 1,100 | 950 | 2,700 | 700 | 45 | 70 | -2 | 1.9 | 650 |');
    expect(text).toContain('| median | **5,563** | 1,100 | 950 | 2,700 | 600 | 40 | 60 | – | 1.2 | 700 |');
    expect(text).toContain('**launch** dominates: 2,700 ms, 49% of the total; then container autoscaler\'s pass,\n1,100 ms (20%).\n');
    expect(text).not.toContain('oversubscribed');
  });

  it('says when the cores were oversubscribed, so the launch took longer than on an idle machine', () => {
    const busy = result();
    for (const r of busy.rounds) r.loadAverage = 14;
    expect(machinesSection(busy, 2).join('\n')).toContain('The cores were oversubscribed (1-minute load average 14.0 on 2 cores, median at t0');
  });

  it('says "not measured" for results written before the scenario existed', () => {
    expect(machinesSection(undefined, 2).join('\n')).toContain('Not measured: run `npm run bench -- --only machines`');
  });
});

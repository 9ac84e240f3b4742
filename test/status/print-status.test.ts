import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../status/src/print-status.js';
import { emptyState } from '../../status/src/schema.js';
import { machineCluster, machineSnapshot } from '../helpers/machine-view.js';
import { sampleState } from './fixtures.js';

const now = new Date('2025-03-01T12:00:05.000Z');

describe('formatStatus', () => {
  it('names the cluster, the live source and when the state was updated', () => {
    const [header, orchestrator] = formatStatus(sampleState, { kind: 'live', url: 'http://127.0.0.1:8080/status' }, now).split('\n');
    expect(header).toBe('cluster demo  source: live orchestrator http://127.0.0.1:8080/status, updated 2025-03-01T12:00:00.000Z (5 s ago)');
    expect(orchestrator).toBe('orchestrator  running, pid 999, http://127.0.0.1:8080, started 2025-03-01T11:00:00.000Z');
  });

  it('names the file and its writer when read from the file', () => {
    const text = formatStatus(sampleState, { kind: 'file', path: 'status/state.json' }, now);
    expect(text).toMatch(/^cluster demo {2}source: file status\/state\.json \(written by orchestrator\), updated 2025-03-01T12:00:00\.000Z/);
  });

  it('prints a workers table with who launched each, its runtime and container count', () => {
    const lines = formatStatus(sampleState, { kind: 'live', url: 'u' }, now).split('\n');
    const start = lines.indexOf('workers (2)');
    expect(lines.slice(start + 1, start + 4)).toEqual([
      '  ID  PROVIDER  HOST       STATE  LAUNCHED BY   CONTAINERS  RUNTIME',
      '  w1  local     127.0.0.1  up     provisioning  2           process',
      '  w2  aws       10.0.0.7   down   autoscaler    1           docker over ssh ubuntu@10.0.0.7:22',
    ]);
  });

  it('prints the machine autoscaler: bounds and workers, launching and releasing with why, the back-off and last error, the last launch and the latest decisions', () => {
    const state = { ...machineCluster(), updatedAt: now.toISOString(), machines: machineSnapshot(now.getTime()) };
    const text = formatStatus(state, { kind: 'live', url: 'u' }, now);
    const section = text.slice(text.indexOf('\nmachines  ') + 1);
    expect(section).toBe(
      [
        'machines  process, 1 to 4 workers: 1 up, 1 draining, 1 launching',
        '  since the start: launched 3, launch failed 2, adopted 1, released 5, release failed 0',
        '  launching w3 since 2025-03-01T12:00:01.000Z (4 s ago)  2 containers fit on no worker',
        '  releasing w1 since 2025-03-01T12:00:03.000Z (2 s ago)  its containers surplus for 60 s',
        '  back-off: 2 launches failed in a row, next in 30 s',
        '  last error: spawn ENOENT: worker binary missing',
        '  last launch w2: decision 1.5 s, launch 2.3 s, start 3.0 s, probe 0.1 s',
        '  2025-03-01T11:59:05.000Z  launch w2 (1 worker)  3 containers fit on no worker',
        '  2025-03-01T11:59:10.000Z  launched w2 (2 workers)  its containers answer',
        '  2025-03-01T11:59:55.000Z  launch-failed w4 (2 workers)  spawn ENOENT: worker binary missing',
        '  2025-03-01T12:00:01.000Z  launch w3 (2 workers)  2 containers fit on no worker',
        '  2025-03-01T12:00:03.000Z  release w1 (3 workers)  its containers surplus for 60 s',
        '',
      ].join('\n'),
    );
  });

  it('prints the machine autoscaler at rest: no back-off, no error, a launch no need asked for, a decision about no worker; nothing without one', () => {
    const machines = machineSnapshot(now.getTime(), {
      paused: true,
      launching: [],
      releasing: [],
      failures: 0,
      backoffUntil: null,
      lastError: null,
      decisions: [{ at: '2025-03-01T12:00:00.000Z', action: 'held', workerId: null, workers: 4, reason: 'at maxWorkers' }],
      launches: [{ workerId: 'w9', needSince: null, decisionMs: null, launchMs: 500, startMs: 250, probeMs: 50 }],
    });
    const text = formatStatus({ ...machineCluster(), machines }, { kind: 'live', url: 'u' }, now);
    expect(text.slice(text.indexOf('\nmachines  ') + 1)).toBe(
      [
        'machines  process (paused), 1 to 4 workers: 1 up, 1 draining, 0 launching',
        '  since the start: launched 3, launch failed 2, adopted 1, released 5, release failed 0',
        '  last launch w9: launch 0.5 s, start 0.3 s, probe 0.1 s',
        '  2025-03-01T12:00:00.000Z  held - (4 workers)  at maxWorkers',
        '',
      ].join('\n'),
    );
    expect(formatStatus(machineCluster(), { kind: 'live', url: 'u' }, now)).not.toMatch(/^machines/m);
  });

  it('prints a containers table with address, state, in flight/limit, served, restarts with the back-off, and a one-line last error', () => {
    const lines = formatStatus(sampleState, { kind: 'live', url: 'u' }, now).split('\n');
    const start = lines.indexOf('containers (3, 1 busy)');
    expect(lines.slice(start + 1, start + 5)).toEqual([
      '  ID     WORKER  ADDRESS         STATE      IN FLIGHT  SERVED  RESTARTS        LAST ERROR',
      '  w1-c1  w1      127.0.0.1:5001  busy       1/1        120     0               -',
      '  w1-c2  w1      127.0.0.1:5002  free       0/2        118     0               -',
      '  w2-c1  w2      10.0.0.7:5000   unhealthy  0/1        3       2, next in 3 s  connect ECONNREFUSED 10.0.0.7:5000 at TCPConnectWrap.afterC…',
    ]);
  });

  it('prints the autoscaler and its latest decisions with their reasons', () => {
    const text = formatStatus(sampleState, { kind: 'live', url: 'u' }, now);
    expect(text).toContain(
      'autoscaler  concurrency, 1 to 8 containers\n  2025-03-01T11:59:30.000Z  scale-out 2 -> 3  concurrency: 5 in flight or queued / target 2 = 3\n',
    );
  });

  it('prints the queue and the counters', () => {
    const text = formatStatus(sampleState, { kind: 'live', url: 'u' }, now);
    expect(text).toContain('queue     3/1000 waiting, oldest 152 ms\n');
    expect(text).toContain('counters  accepted 250, queued 40, completed 241, failed 2, rejected 1, timed out 1, cancelled 0, refused 5, redispatched 5\n');
  });

  it('says so when there are no workers, containers, orchestrator, queue or counters', () => {
    const state = { ...emptyState('fresh', 'provisioning'), updatedAt: '2025-03-01T11:58:00.000Z' };
    const text = formatStatus(state, { kind: 'file', path: 's.json' }, now);
    expect(text).toContain('(written by provisioning), updated 2025-03-01T11:58:00.000Z (2 min ago)');
    expect(text).toContain('orchestrator  none has run');
    expect(text).toContain('workers (0)\n  (none)\n');
    expect(text).toContain('containers (0, 0 busy)\n  (none)\n');
    expect(text).toContain('queue     (no orchestrator has reported one)');
    expect(text).toContain('counters  (none yet)');
    expect(text).toContain('autoscaler  (no orchestrator has reported one)');
  });

  it('leaves out the age of an unreadable or future time', () => {
    expect(formatStatus({ ...sampleState, updatedAt: 'yesterday' }, { kind: 'live', url: 'u' }, now)).toMatch(/updated yesterday\n/);
    expect(formatStatus({ ...sampleState, updatedAt: '2025-03-01T12:01:00.000Z' }, { kind: 'live', url: 'u' }, now)).toMatch(/updated 2025-03-01T12:01:00\.000Z\n/);
  });
});

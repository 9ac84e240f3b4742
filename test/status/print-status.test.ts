import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../status/src/print-status.js';
import { emptyState } from '../../status/src/schema.js';
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

  it('prints a workers table with each runtime and container count', () => {
    const lines = formatStatus(sampleState, { kind: 'live', url: 'u' }, now).split('\n');
    const start = lines.indexOf('workers (2)');
    expect(lines.slice(start + 1, start + 4)).toEqual([
      '  ID  PROVIDER  HOST       STATE  CONTAINERS  RUNTIME',
      '  w1  local     127.0.0.1  up     2           process',
      '  w2  aws       10.0.0.7   down   1           docker over ssh ubuntu@10.0.0.7:22',
    ]);
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

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { startPerWorker } from '../../provisioning/src/worker-start-queue.js';
import { StartCancelledError } from '../../runtime/src/errors.js';
import { useTempCluster } from '../helpers/cluster.js';
import { FAKE_WORKER_COMMAND } from '../helpers/processes.js';

/** A start the test finishes by hand: `running` lists the names begun and not finished, in the order begun. */
function manualStarts() {
  const running: string[] = [];
  const begun: string[] = [];
  const finish = new Map<string, { resolve: (name: { name: string }) => void; reject: (error: unknown) => void }>();
  const start = (container: { name: string }, signal: AbortSignal) =>
    new Promise<{ name: string }>((resolve, reject) => {
      if (signal.aborted) return reject(new StartCancelledError(container.name));
      running.push(container.name);
      begun.push(container.name);
      const done = (): void => void running.splice(running.indexOf(container.name), 1);
      finish.set(container.name, {
        resolve: (value) => (done(), resolve(value)),
        reject: (error) => (done(), reject(error)),
      });
      signal.addEventListener('abort', () => finish.get(container.name)?.reject(new StartCancelledError(container.name)), { once: true });
    });
  return { running, begun, finish, start };
}

/** Lets the queues run what they can. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

const containers = ['w1-a', 'w1-b', 'w1-c', 'w1-d', 'w2-a', 'w2-b', 'w2-c'].map((name) => ({ name, workerId: name.slice(0, 2) }));
const onWorker = (names: string[], worker: string) => names.filter((name) => name.startsWith(worker));

describe('startPerWorker', () => {
  it('runs at most `concurrency` starts per worker, workers side by side, each worker in order', async () => {
    const { running, begun, finish, start } = manualStarts();
    const lines: string[] = [];
    const all = startPerWorker(containers, start, { concurrency: 2, say: (line) => lines.push(line) });
    await settle();
    // Both workers start at once, two each: four in flight, none of a worker's third.
    expect(running).toEqual(['w1-a', 'w1-b', 'w2-a', 'w2-b']);

    finish.get('w1-b')!.resolve({ name: 'w1-b' });
    await settle();
    expect(onWorker(running, 'w1')).toEqual(['w1-a', 'w1-c']);
    expect(onWorker(running, 'w2')).toEqual(['w2-a', 'w2-b']);

    for (const name of ['w1-a', 'w2-a', 'w1-c', 'w2-b', 'w1-d', 'w2-c']) {
      finish.get(name)!.resolve({ name });
      await settle();
      expect(onWorker(running, 'w1').length).toBeLessThanOrEqual(2);
      expect(onWorker(running, 'w2').length).toBeLessThanOrEqual(2);
    }
    expect((await all).map((outcome) => outcome.status)).toEqual(Array(7).fill('fulfilled'));
    expect(onWorker(begun, 'w1')).toEqual(['w1-a', 'w1-b', 'w1-c', 'w1-d']);
    expect(onWorker(begun, 'w2')).toEqual(['w2-a', 'w2-b', 'w2-c']);

    // Progress from the queues' events: each start begun and done, with the worker's load.
    expect(lines.slice(0, 4)).toEqual(['w1: starting w1-a (1 starting, 3 waiting)', 'w1: starting w1-b (2 starting, 2 waiting)', 'w2: starting w2-a (1 starting, 2 waiting)', 'w2: starting w2-b (2 starting, 1 waiting)']);
    expect(lines).toContain('w1: w1-b healthy (1 starting, 2 waiting)');
    expect(lines).toContain('w1: starting w1-c (2 starting, 1 waiting)');
    expect(lines.filter((line) => line.endsWith('healthy (0 starting, 0 waiting)'))).toEqual(['w1: w1-d healthy (0 starting, 0 waiting)', 'w2: w2-c healthy (0 starting, 0 waiting)']);
  });

  it('cancels the others on the first failure: those running see the abort, those waiting never begin', async () => {
    const { begun, finish, start } = manualStarts();
    const lines: string[] = [];
    const all = startPerWorker(containers, start, { concurrency: 2, say: (line) => lines.push(line) });
    await settle();
    finish.get('w2-a')!.reject(Object.assign(new Error('w2-a refused'), { code: 'PORT_IN_USE' }));
    const outcomes = await all;
    const codes = outcomes.map((outcome) => (outcome.status === 'rejected' ? (outcome.reason as { code: string }).code : 'ok'));
    expect(codes).toEqual(['START_CANCELLED', 'START_CANCELLED', 'START_CANCELLED', 'START_CANCELLED', 'PORT_IN_USE', 'START_CANCELLED', 'START_CANCELLED']);
    expect(begun).toEqual(['w1-a', 'w1-b', 'w2-a', 'w2-b']);
    // Only the failure itself is worth a line; cancellations are its consequence.
    expect(lines.filter((line) => line.includes('refused'))).toEqual(['w2: w2-a refused (1 starting, 1 waiting)']);
  });
});

describe('provision through the worker queues (real processes)', () => {
  const cluster = useTempCluster();

  it('starts a process worker 4 at a time, both workers at once, and says so from the queue events', async () => {
    const config = cluster.config({ workers: 2, containersPerWorker: 5 });
    const lines: string[] = [];
    const provider = createProvider(config, pino({ level: 'silent' }), { command: FAKE_WORKER_COMMAND, say: (line) => lines.push(line) });
    const report = await provisionCluster(config, { provider });
    await teardownCluster(config, { provider });
    expect(report.started).toHaveLength(10);

    const starting = lines.filter((line) => line.includes(': starting '));
    const inFlight = starting.map((line) => Number(/\((\d+) starting/.exec(line)![1]));
    // ProcessDriver.concurrency is 4: the fifth of a worker waits for one of the first four.
    expect(Math.max(...inFlight)).toBe(4);
    for (const worker of ['w1', 'w2']) {
      const names = starting.filter((line) => line.startsWith(`${worker}:`)).map((line) => line.split(' ')[2]);
      expect(names).toEqual(report.containers.filter((c) => c.workerId === worker).map((c) => c.id));
    }
    // The two workers' starts overlap: w2 begins before w1 is done.
    const firstW2 = lines.findIndex((line) => line.startsWith('w2: starting'));
    const lastW1 = lines.findLastIndex((line) => line.startsWith('w1:') && line.includes(' healthy'));
    expect(firstW2).toBeLessThan(lastW1);
  });
});

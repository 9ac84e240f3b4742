import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { reconcile } from '../../orchestrator/src/reconciler.js';
import { LABELS, type ContainerInfo } from '../../runtime/src/driver.js';
import { containerRecordSchema, emptyState, workerRecordSchema, type ContainerRecord, type StateFile } from '../../status/src/schema.js';

const log = createLogger('test', 'silent');

function record(id: string, workerId: string, port: number, runtimeId: string | null, managed = true): ContainerRecord {
  return containerRecordSchema.parse({ id, workerId, host: '127.0.0.1', port, runtimeId, managed, state: 'free', served: 3 });
}

function running(name: string, workerId: string, port: number, runtimeId: string, state: ContainerInfo['state'] = 'running'): ContainerInfo {
  return {
    runtimeId,
    name,
    state,
    host: '127.0.0.1',
    port,
    exitCode: null,
    labels: { [LABELS.cluster]: 'c', [LABELS.worker]: workerId, [LABELS.container]: name, [LABELS.port]: String(port) },
  };
}

function inventory(containers: ContainerRecord[]): StateFile {
  const state = emptyState('c', 'provisioning');
  state.workers = [
    workerRecordSchema.parse({ id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' } }),
    workerRecordSchema.parse({ id: 'w2', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' } }),
  ];
  state.containers = containers;
  return state;
}

describe('reconcile on start', () => {
  it('keeps running containers, marks missing ones down, adopts running labelled ones it did not record', async () => {
    const state = inventory([record('w1-5000', 'w1', 5000, '11'), record('w1-5001', 'w1', 5001, '12'), record('w2-5100', 'w2', 5100, '21')]);
    const listed: Record<string, ContainerInfo[]> = {
      w1: [running('w1-5000', 'w1', 5000, '11'), running('w1-5001', 'w1', 5001, '12', 'exited')],
      w2: [running('w2-5100', 'w2', 5100, '21'), running('w2-5101', 'w2', 5101, '22')],
    };
    const result = await reconcile(state, async (worker) => listed[worker.id]!, log);
    expect(result.missing).toEqual(['w1-5001']);
    expect(result.adopted).toEqual(['w2-5101']);
    const byId = Object.fromEntries(result.containers.map((c) => [c.id, c]));
    expect(byId['w1-5000']).toMatchObject({ state: 'free', served: 3, runtimeId: '11' });
    expect(byId['w1-5001']).toMatchObject({ state: 'down', lastError: expect.stringContaining('not running') });
    expect(byId['w2-5101']).toMatchObject({ workerId: 'w2', port: 5101, runtimeId: '22', managed: true, state: 'starting' });
    expect(result.containers).toHaveLength(4);
  });

  it('finds a recorded container with no runtime id by its name label (compose names it otherwise), without adopting it twice', async () => {
    const state = inventory([record('w1-5000', 'w1', 5000, null)]);
    const composed = { ...running('w1-5000', 'w1', 5000, 'abc'), name: 'local-w1_model-a_1' };
    const result = await reconcile(state, async (worker) => (worker.id === 'w1' ? [composed] : []), log);
    expect(result.adopted).toEqual([]);
    expect(result.containers).toEqual([expect.objectContaining({ id: 'w1-5000', runtimeId: 'abc', state: 'free' })]);
  });

  it('changes nothing on a worker whose runtime cannot be asked', async () => {
    const state = inventory([record('w1-5000', 'w1', 5000, '11'), record('w2-5100', 'w2', 5100, '21')]);
    const result = await reconcile(
      state,
      async (worker) => {
        if (worker.id === 'w1') throw new Error('engine unreachable');
        return null;
      },
      log,
    );
    expect(result.containers).toEqual(state.containers);
    expect(result.missing).toEqual([]);
  });

  it('leaves containers it merely routes to alone, and never duplicates a recorded one', async () => {
    const state = inventory([record('ext', 'w1', 7000, null, false), record('w2-5100', 'w2', 5100, '21')]);
    const result = await reconcile(state, async (worker) => (worker.id === 'w2' ? [running('w2-5100', 'w2', 5100, '21')] : []), log);
    expect(result.containers.map((c) => [c.id, c.state])).toEqual([
      ['ext', 'free'],
      ['w2-5100', 'free'],
    ]);
    expect(result.adopted).toEqual([]);
  });
});

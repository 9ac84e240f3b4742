import { stateFileSchema, type StateFile } from '../../status/src/schema.js';

/** A cluster of two workers (one local, one over SSH) with containers in several states. */
export const sampleState: StateFile = stateFileSchema.parse({
  version: 1,
  cluster: 'demo',
  updatedAt: '2025-03-01T12:00:00.000Z',
  writer: 'orchestrator',
  workers: [
    { id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up' },
    {
      id: 'w2',
      provider: 'aws',
      host: '10.0.0.7',
      runtime: { driver: 'docker', ssh: { host: '10.0.0.7', port: 22, username: 'ubuntu', privateKeyPath: '/keys/id' } },
      state: 'down',
      launchedBy: 'autoscaler',
    },
  ],
  containers: [
    { id: 'w1-c1', workerId: 'w1', host: '127.0.0.1', port: 5001, runtimeId: '4242', managed: true, state: 'busy', limit: 1, inFlight: 1, served: 120, failures: 0, lastError: null },
    { id: 'w1-c2', workerId: 'w1', host: '127.0.0.1', port: 5002, runtimeId: '4243', managed: true, state: 'free', limit: 2, inFlight: 0, served: 118, failures: 0, lastError: null },
    {
      id: 'w2-c1',
      workerId: 'w2',
      host: '10.0.0.7',
      port: 5000,
      runtimeId: 'abc123',
      managed: true,
      state: 'unhealthy',
      limit: 1,
      inFlight: 0,
      served: 3,
      failures: 4,
      restarts: 2,
      nextRestartAt: '2025-03-01T12:00:08.000Z',
      lastError: 'connect ECONNREFUSED 10.0.0.7:5000\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) and a long tail',
    },
  ],
  orchestrator: { pid: 999, url: 'http://127.0.0.1:8080', startedAt: '2025-03-01T11:00:00.000Z', running: true },
  queue: { length: 3, capacity: 1000, oldestWaitMs: 152.4 },
  counters: { accepted: 250, queued: 40, completed: 241, failed: 2, rejected: 1, timedOut: 1, cancelled: 0, refused: 5, redispatched: 5 },
  autoscaler: {
    policy: 'concurrency',
    paused: false,
    min: 1,
    max: 8,
    decisions: [{ at: '2025-03-01T11:59:30.000Z', policy: 'concurrency', current: 2, desired: 3, action: 'scale-out', reason: 'concurrency: 5 in flight or queued / target 2 = 3' }],
  },
});

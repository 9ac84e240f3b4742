import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { provisionCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, removeDockerObjects, uniqueName } from '../helpers/docker.js';
import { FakeEc2 } from '../helpers/fake-ec2.js';
import { readState } from '../helpers/orchestrator-process.js';
import { ensureSshd, generateKey, startSshd, type Sshd } from '../helpers/sshd.js';

// EC2 provisioning over real SSH: a throwaway sshd on 127.0.0.2 plays the instance (its host key
// printed on the fake console, as cloud-init does), in front of this machine's Docker.
describe('EC2 provisioning over SSH', () => {
  const image = `inference-worker:${uniqueName('upload')}`;
  let dir: string;
  let sshd: Sshd | undefined;
  let hostKey: string;
  let fake: FakeEc2;
  let cluster: TempCluster;
  let backends: Backend[] = [];

  beforeAll(async () => {
    await Promise.all([ensureDockerEngine(), ensureSshd()]);
    await buildWorkerImage(image);
    dir = await mkdtemp(join(tmpdir(), 'aws-ssh-'));
    const [host, clientPublic] = await Promise.all([generateKey(join(dir, 'host_key')), generateKey(join(dir, 'client_key'))]);
    hostKey = host!;
    await writeFile(join(dir, 'authorized_keys'), `${clientPublic}\n`);
    sshd = await startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: join(dir, 'authorized_keys'), listenAddress: '127.0.0.2' });
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);

  afterAll(async () => {
    await sshd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await removeDockerObjects([], [image]);
  }, 60_000);

  beforeEach(async () => {
    fake = new FakeEc2();
    fake.firstHost = 2;
    fake.hostKey = hostKey;
    fake.keyPairs.set('mine', { id: 'key-mine', tags: {} });
    await fake.listen();
    cluster = await tempCluster(1);
  });

  afterEach(async () => {
    await Promise.all(backends.map((b) => b.kill()));
    backends = [];
    await fake.stop();
    await cluster.cleanup();
  });

  const config = (flags: Record<string, unknown>): ProvisionConfig =>
    loadProvisionConfig({
      env: {},
      flags: {
        provider: 'aws',
        cluster: 'demo',
        workers: 1,
        sshCidr: '203.0.113.7/32',
        keyName: 'mine',
        sshKeyPath: join(dir, 'client_key'),
        sshUser: 'root',
        sshPort: sshd!.port,
        workerImage: image,
        statePath: cluster.statePath,
        basePort: cluster.basePort,
        launchTimeoutMs: 60_000,
        logLevel: 'silent',
        ...flags,
      },
    });

  const serve = async (host: string): Promise<void> => {
    for (const port of [cluster.basePort, cluster.basePort + 1]) backends.push(await startBackend(`w1-${port}`, { host, port }));
  };

  it('--upload-image: loads the local image on the worker over SSH, checking its host key, before waiting for its containers', { timeout: 120_000 }, async () => {
    const upload = config({ uploadImage: true });
    // The engine's own record of the load; the model containers "start" once it happened.
    const events = spawn('docker', ['events', '--filter', 'type=image', '--filter', 'event=load', '--format', '{{.Actor.ID}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const loadedEvent = new Promise<string>((resolve) => createInterface({ input: events.stdout }).once('line', resolve));
    void loadedEvent.then(() => serve('127.0.0.2'));
    const said: string[] = [];
    try {
      const provider = createProvider(upload, createLogger('test', 'silent'), { ec2: fake.client(), pollSeconds: 1, say: (line) => said.push(line) });
      const report = await provisionCluster(upload, { provider });
      expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`]);
    } finally {
      events.kill();
    }
    expect(await loadedEvent).toBeTruthy();
    expect(said).toContainEqual(`w1: Loaded image: ${image}`);
    // The worker's user-data waits for the upload instead of pulling.
    const userData = fake.instances[0]!.userData;
    expect(userData).toContain('waiting up to 30 min for provisioning to upload');
    expect(userData).not.toContain('docker pull');
    expect(await readFile(join(cluster.dir, 'keys', 'demo.known_hosts'), 'utf8')).toBe(`[127.0.0.2]:${sshd!.port} ${hostKey}\n`);
  });

  it('--health-via ssh: reaches containers whose ports are closed to this machine through an SSH tunnel', { timeout: 60_000 }, async () => {
    // The containers answer on the "instance's" own loopback only: 127.0.0.2:port is closed.
    await serve('127.0.0.1');
    const tunnel = config({ healthVia: 'ssh' });
    const provider = createProvider(tunnel, createLogger('test', 'silent'), { ec2: fake.client(), pollSeconds: 1 });
    const report = await provisionCluster(tunnel, { provider });
    expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`]);
    expect((await readState(cluster.statePath)).workers[0]!.host).toBe('127.0.0.2');

    // Directly, the same wait finds nothing and names what it tried.
    await fake.stop();
    fake = new FakeEc2();
    fake.firstHost = 2;
    fake.hostKey = hostKey;
    fake.keyPairs.set('mine', { id: 'key-mine', tags: {} });
    await fake.listen();
    const direct = config({ healthVia: 'direct', launchTimeoutMs: 3_000 });
    const error = await provisionCluster(direct, { provider: createProvider(direct, createLogger('test', 'silent'), { ec2: fake.client(), pollSeconds: 1 }) }).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'WORKERS_UNHEALTHY', message: expect.stringContaining(`127.0.0.2:${cluster.basePort}: connection refused`) });
  });
});

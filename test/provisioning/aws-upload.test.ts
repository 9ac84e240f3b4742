import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { provisionCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, removeDockerObjects, uniqueName } from '../helpers/docker.js';
import { FakeEc2 } from '../helpers/fake-ec2.js';
import { ensureSshd, generateKey, startSshd, type Sshd } from '../helpers/sshd.js';

// A worker image that exists only here goes to the instance over SSH: `docker save` piped into
// `docker load` through a real sshd (host key from the "console", as on EC2), into this
// machine's engine, observed as the engine's own image load event.
describe('EC2 provisioning with --upload-image', () => {
  const image = `inference-worker:${uniqueName('upload')}`;
  let dir: string;
  let sshd: Sshd | undefined;
  let fake: FakeEc2;
  let cluster: TempCluster;
  const backends: Backend[] = [];

  beforeAll(async () => {
    await Promise.all([ensureDockerEngine(), ensureSshd()]);
    await buildWorkerImage(image);
    dir = await mkdtemp(join(tmpdir(), 'aws-upload-'));
    const [hostKey, clientPublic] = await Promise.all([generateKey(join(dir, 'host_key')), generateKey(join(dir, 'client_key'))]);
    await writeFile(join(dir, 'authorized_keys'), `${clientPublic}\n`);
    sshd = await startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: join(dir, 'authorized_keys') });
    fake = new FakeEc2();
    fake.hostKey = hostKey!;
    fake.keyPairs.set('mine', { id: 'key-mine', tags: {} });
    await fake.listen();
    cluster = await tempCluster(1);
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);

  afterAll(async () => {
    await Promise.all(backends.map((b) => b.kill()));
    await fake?.stop();
    await sshd?.stop();
    await cluster?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    await removeDockerObjects([], [image]);
  }, 60_000);

  it('loads the local image on the worker over SSH, checking its host key, before waiting for its containers', { timeout: 120_000 }, async () => {
    const config = loadProvisionConfig({
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
        uploadImage: true,
        workerImage: image,
        statePath: cluster.statePath,
        basePort: cluster.basePort,
        launchTimeoutMs: 60_000,
        logLevel: 'silent',
      },
    });
    // The engine's own record of the load; the model containers "start" once it happened.
    const events = spawn('docker', ['events', '--filter', 'type=image', '--filter', 'event=load', '--format', '{{.Actor.ID}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const loadedEvent = new Promise<string>((resolve) => createInterface({ input: events.stdout }).once('line', resolve));
    void loadedEvent.then(async () => {
      for (const port of [cluster.basePort, cluster.basePort + 1]) backends.push(await startBackend(`w1-${port}`, { port }));
    });
    const said: string[] = [];
    try {
      const provider = createProvider(config, createLogger('test', 'silent'), { ec2: fake.client(), pollSeconds: 1, say: (line) => said.push(line) });
      const report = await provisionCluster(config, { provider });
      expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`]);
    } finally {
      events.kill();
    }
    expect(await loadedEvent).toMatch(/^sha256:|^inference-worker/);
    expect(said).toContainEqual(expect.stringMatching(new RegExp(`^w1: Loaded image: ${image.replace(/[.:]/g, '\\$&')}$`)));
    // The worker's user-data waits for the upload instead of pulling.
    const userData = fake.instances[0]!.userData;
    expect(userData).toContain('waiting up to 30 min for provisioning to upload');
    expect(userData).not.toContain('docker pull');
    expect(await readFile(join(cluster.dir, 'keys', 'demo.known_hosts'), 'utf8')).toBe(`[127.0.0.1]:${sshd!.port} ${fake.hostKey}\n`);
  });
});

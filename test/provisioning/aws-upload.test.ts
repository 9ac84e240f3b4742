import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DescribeInstanceAttributeCommand, DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import { createLogger } from '../../common/src/logger.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { provisionCluster } from '../../provisioning/src/commands.js';
import { Compose } from '../../provisioning/src/compose.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { LABELS } from '../../runtime/src/driver.js';
import type { StateFile } from '../../status/src/schema.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, inspect, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { interceptConsole, stopIntercepting } from '../helpers/ec2-intercept.js';
import { startMoto, type Moto } from '../helpers/moto.js';
import { liveWorkers, loopbackOf, watchInstances, workerOf, type InstanceWatch } from '../helpers/moto-instances.js';
import { ROUTE_ENV, routeEmulatorAddresses } from '../helpers/network-guard.js';
import { liveStatus, readState, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';
import { ensureSshd, generateKey, startSshd, type Sshd } from '../helpers/sshd.js';

// EC2 provisioning over real SSH, against moto. Once an instance exists in the emulator, a
// throwaway sshd on its loopback address (127.214.A.B, where the test network guard routes its
// public 54.214.A.B) plays it, in front of this machine's Docker, with the key pair's public key
// authorized as cloud-init would. Its host key is on the console through nock: moto boots no
// operating system, so its console has no cloud-init output.

const log = createLogger('test', 'silent');
const TOKEN = 'aws-scale-out-admin-token';

describe('EC2 provisioning over SSH, against moto', () => {
  const image = `inference-worker:${uniqueName('upload')}`;
  let dir: string;
  let hostKey: string;
  let moto: Moto;
  let ec2: EC2Client;
  let undoRoute: (() => void) | undefined;
  let clusters = 0;

  beforeAll(async () => {
    await Promise.all([ensureDockerEngine(), ensureSshd()]);
    await buildWorkerImage(image);
    dir = await mkdtemp(join(tmpdir(), 'aws-ssh-'));
    hostKey = await generateKey(join(dir, 'host_key'));
    moto = await startMoto();
    ec2 = moto.client();
    undoRoute = routeEmulatorAddresses();
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);

  afterAll(async () => {
    undoRoute?.();
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await removeDockerObjects([], [image]);
  }, 60_000);

  let cluster: TempCluster;
  let name: string;
  let sshPort: number;
  let watches: InstanceWatch[] = [];
  let sshds: Sshd[] = [];
  let backends: Backend[] = [];
  let orchestrator: OrchestratorProcess | undefined;
  /** Instances whose sshd listens: their console shows its host key. */
  let booted: Set<string>;

  beforeEach(async () => {
    cluster = await tempCluster(1);
    name = `ssh-${process.pid}-${++clusters}`;
    sshPort = await freeBasePort([0]);
    booted = new Set();
    interceptConsole(moto.endpoint, (instanceId) => (booted.has(instanceId) ? [hostKey] : undefined));
  });

  afterEach(async () => {
    try {
      await Promise.all(watches.map((w) => w.stop()));
    } finally {
      watches = [];
      stopIntercepting();
      if (orchestrator?.child.exitCode === null) orchestrator.child.kill('SIGKILL');
      await orchestrator?.exited;
      orchestrator = undefined;
      await Promise.all([...sshds.map((s) => s.stop()), ...backends.map((b) => b.kill())]);
      sshds = [];
      backends = [];
      // The containers the "instances" ran: compose's and the orchestrator's, all labelled with the cluster.
      const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${name}`]);
      await removeDockerObjects(stdout.split('\n').filter(Boolean));
      await cluster.cleanup();
    }
  }, 60_000);

  const config = (flags: Record<string, unknown>): ProvisionConfig =>
    loadProvisionConfig({
      env: {},
      flags: {
        provider: 'aws',
        cluster: name,
        workers: 1,
        sshCidr: '203.0.113.7/32',
        sshUser: 'root',
        sshPort,
        workerImage: image,
        statePath: cluster.statePath,
        basePort: cluster.basePort,
        launchTimeoutMs: 60_000,
        logLevel: 'silent',
        ...flags,
      },
    });

  /**
   * Each instance of `cluster` the emulator starts boots: the key pair's public key goes into
   * authorized_keys, its sshd listens, the console shows its host key; then `then` runs (what the
   * instance does next).
   */
  function bootInstances(clusterName: string, then: (instance: Instance) => Promise<void> = async () => {}): void {
    watches.push(
      watchInstances(ec2, clusterName, async (instance) => {
        const keys = await ec2.send(new DescribeKeyPairsCommand({ KeyNames: [instance.KeyName!], IncludePublicKey: true }));
        const authorizedKeys = join(dir, `${instance.InstanceId}.authorized_keys`);
        await writeFile(authorizedKeys, `${keys.KeyPairs![0]!.PublicKey!.trim()}\n`);
        sshds.push(await startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: authorizedKeys, listenAddress: loopbackOf(instance), port: sshPort }));
        booted.add(instance.InstanceId!);
        await then(instance);
      }),
    );
  }

  const userDataOf = async (instance: Instance): Promise<string> => {
    const attribute = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instance.InstanceId, Attribute: 'userData' }));
    return Buffer.from(attribute.UserData?.Value ?? '', 'base64').toString('utf8');
  };

  const serve = async (workerId: string, host: string): Promise<void> => {
    for (const port of [cluster.basePort, cluster.basePort + 1]) backends.push(await startBackend(`${workerId}-${port}`, { host, port }));
  };

  it('--upload-image: loads the local image on the worker over SSH, checking its host key, before waiting for its containers', { timeout: 120_000 }, async () => {
    let instance: Instance | undefined;
    bootInstances(name, async (booted) => void (instance = booted));
    // The engine's own record of the load; the model containers "start" once it happened.
    const events = spawn('docker', ['events', '--filter', 'type=image', '--filter', 'event=load', '--format', '{{.Actor.ID}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const loadedEvent = new Promise<string>((resolve) => createInterface({ input: events.stdout }).once('line', resolve));
    const served = loadedEvent.then(() => serve('w1', loopbackOf(instance!)));
    const said: string[] = [];
    try {
      const upload = config({ uploadImage: true });
      const report = await provisionCluster(upload, { provider: createProvider(upload, log, { ec2, pollSeconds: 1, say: (line) => said.push(line) }) });
      expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`]);
    } finally {
      events.kill();
    }
    expect(await loadedEvent).toBeTruthy();
    await served;
    expect(said).toContainEqual(`w1: Loaded image: ${image}`);
    // The worker's user-data, as EC2 keeps it, waits for the upload instead of pulling.
    const userData = await userDataOf(instance!);
    expect(userData).toContain('waiting up to 30 min for provisioning to upload');
    expect(userData).not.toContain('docker pull');
    expect(await readFile(join(cluster.dir, 'keys', `${name}.known_hosts`), 'utf8')).toBe(`[${instance!.PublicIpAddress}]:${sshPort} ${hostKey}\n`);
  });

  it('--health-via ssh: reaches containers whose ports are closed to this machine through an SSH tunnel', { timeout: 90_000 }, async () => {
    // The containers answer on the instance's own loopback only: its public address is closed on their ports.
    bootInstances(name, () => serve('w1', '127.0.0.1'));
    const tunnel = config({ healthVia: 'ssh' });
    const report = await provisionCluster(tunnel, { provider: createProvider(tunnel, log, { ec2, pollSeconds: 1 }) });
    expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`]);
    const [instance] = await liveWorkers(ec2, name);
    expect((await readState(cluster.statePath)).workers[0]!.host).toBe(instance!.PublicIpAddress);

    // Directly, the same wait on another instance finds nothing and names what it tried.
    const direct = `${name}-direct`;
    bootInstances(direct);
    const directConfig = config({ cluster: direct, healthVia: 'direct', launchTimeoutMs: 4_000, statePath: join(cluster.dir, 'direct.json') });
    const error = await provisionCluster(directConfig, { provider: createProvider(directConfig, log, { ec2, pollSeconds: 1 }) }).catch((e: Error) => e);
    const [other] = await liveWorkers(ec2, direct);
    expect(error).toMatchObject({ code: 'WORKERS_UNHEALTHY', message: expect.stringContaining(`${other!.PublicIpAddress}:${cluster.basePort}: connection refused`) });
  });

  it(
    "a scale-out on an AWS-provisioned worker places a container on the third port over Docker-over-SSH; it enters the rotation and answers, and EC2's rule covers its port",
    { timeout: 240_000 },
    async () => {
      // The instance does what its user-data says: compose-starts the model containers with the
      // environment the user-data carries (its worker.env), here on this machine's engine.
      bootInstances(name, async (instance) => {
        const env = /cat > "\$INSTALL_DIR\/worker\.env" <<'ENV_FILE_END'\n([\s\S]*?)\nENV_FILE_END/.exec(await userDataOf(instance))?.[1];
        if (!env) throw new Error(`instance ${instance.InstanceId}'s user-data carries no worker.env`);
        const variables = Object.fromEntries(env.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
        await new Compose(process.env).up(`${name}-${workerOf(instance)}`, variables);
      });
      const aws = config({});
      const report = await provisionCluster(aws, { provider: createProvider(aws, log, { ec2, pollSeconds: 1 }) });
      const [first, second, third] = [0, 1, 2].map((i) => `w1-${cluster.basePort + i}`);
      expect(report.started).toEqual([first, second]);

      // The orchestrator as `npm start` runs it, on the inventory provisioning wrote; it reaches the instance's engine over SSH.
      orchestrator = await startOrchestrator(cluster.statePath, ['--health-interval-ms', '200'], { env: { ORCH_ADMIN_TOKEN: TOKEN, [ROUTE_ENV]: '1' } });
      const { url } = orchestrator;
      const inRotation = (status: StateFile): string[] => status.containers.filter((c) => c.state === 'free' || c.state === 'busy').map((c) => c.id).sort();
      await poll(async () => (inRotation(await liveStatus(url)).length === 2 ? true : undefined), 'the two provisioned containers in rotation');

      const admin = (path: string, body?: unknown) =>
        request(`${url}/admin${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      const scaled = await admin('/scale', { containers: 3 });
      expect(scaled.statusCode).toBe(202);
      expect(((await scaled.body.json()) as { decision: { action: string } }).decision.action).toBe('scale-out');
      // In rotation, or the orchestrator's reason why not (a start that failed), whichever comes first.
      const outcome = await poll(async () => {
        if (inRotation(await liveStatus(url)).includes(third!)) return 'in rotation';
        const failed = orchestrator!.output.stdout.split('\n').find((line) => line.includes('"type":"ContainerStartError"'));
        return failed ? (JSON.parse(failed) as { err: { message: string } }).err.message : undefined;
      }, `${third} in rotation`, 120_000);
      expect(outcome).toBe('in rotation');
      // A real container of the image, started through the instance's engine on the third port.
      const started = await inspect(third!);
      expect(started.Config.Image).toBe(image);
      expect(started.Config.Labels).toMatchObject({ [LABELS.cluster]: name, [LABELS.worker]: 'w1', [LABELS.port]: String(cluster.basePort + 2) });

      // With the two others drained, a request can only be answered by the new one.
      for (const id of [first, second]) expect((await admin(`/containers/${id}/drain`)).statusCode).toBe(202);
      const answer = await request(`${url}/run_model`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'hello' }) });
      expect(answer.statusCode).toBe(200);
      expect(((await answer.body.json()) as { container: string }).container).toBe(third);

      // And on AWS it is reachable: the group's rule read back from EC2 covers the port.
      const groups = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [name] }] }));
      const rules = groups.SecurityGroups![0]!.IpPermissions ?? [];
      expect(rules.some((r) => r.FromPort! <= cluster.basePort + 2 && r.ToPort! >= cluster.basePort + 2 && r.FromPort !== 22)).toBe(true);
      await stopOrchestrator(orchestrator);
    },
  );
});

import { mkdtemp, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  ImportKeyPairCommand,
  type EC2Client,
  type Instance,
  type IpPermission,
} from '@aws-sdk/client-ec2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { keyHash } from '../../orchestrator/src/access-control.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import type { Ec2Provider } from '../../provisioning/src/aws/ec2-provider.js';
import { REMOTE_ROOT, remotePaths } from '../../provisioning/src/aws/orchestrator-instance.js';
import { provisionCluster, teardownCluster, type ProvisionReport } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { formatProvisionReport } from '../../provisioning/src/report.js';
import { stateFileSchema } from '../../status/src/schema.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { createTestCa, type IssuedCertificate, type TestCa } from '../helpers/certificates.js';
import { run, runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, inspect, NODE_BASE_IMAGE, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { interceptConsole, stopIntercepting } from '../helpers/ec2-intercept.js';
import { loopbackOf, watchInstances, type InstanceWatch } from '../helpers/moto-instances.js';
import { MOTO_CREDENTIALS, motoCliEnv, startMoto, type Moto } from '../helpers/moto.js';
import { routeEmulatorAddresses } from '../helpers/network-guard.js';
import { readState } from '../helpers/orchestrator-process.js';
import { ensureSshd, generateKey, startSshd, type Sshd } from '../helpers/sshd.js';
import { freeBasePort } from '../../common/src/free-ports.js';

// --with-orchestrator against moto: the calls and the rules are the emulator's to judge. What an
// emulator cannot be, local stand-ins play, each at its instance's public address moved onto
// loopback: a real sshd per instance (the host key the consoles print is its own; moto's console
// has no host key block, so nock answers GetConsoleOutput, see ec2-intercept.ts), the model
// containers as backends behind the worker's sshd (--health-via ssh, the default with the
// orchestrator), and this machine's Docker as the orchestrator instance's engine.
//
// The container the deploy starts is a stand-in image, not the orchestrator: the real one would
// probe the workers' private addresses, which moto invents (10.x) and which no test may reach. The
// real image runs against real workers in test/e2e/orchestrator-image.test.ts.

const SSH_CIDR = '203.0.113.7/32';
const CLIENT_CIDR = '198.51.100.0/24';
/**
 * Answers /health, /status with the inventory it was given (what a status client reads), and
 * /config with the config file it was started with (`--config FILE`, as the orchestrator takes it)
 * or read again on SIGHUP and how many SIGHUPs it got, on ORCH_HOST:ORCH_PORT; over HTTPS with the
 * TLS files that file names, as the orchestrator does, taking them again on SIGHUP.
 */
const STAND_IN_PROGRAM = [
  "process.on('SIGTERM', () => process.exit(0));",
  "const fs = require('fs');",
  "const at = process.argv.indexOf('--config');",
  'const file = at > 0 ? process.argv[at + 1] : undefined;',
  "const read = () => (file ? JSON.parse(fs.readFileSync(file, 'utf8')) : null);",
  'let seen = { hups: 0, config: read() };',
  'const pems = () => ({ cert: fs.readFileSync(seen.config.tlsCertFile), key: fs.readFileSync(seen.config.tlsKeyFile) });',
  "const state = () => fs.readFileSync('/state/state.json');",
  'const handler = (req, res) => {',
  "  if (req.url === '/health') return res.end('{\"status\":\"ok\"}');",
  "  if (req.url === '/status') { res.setHeader('content-type', 'application/json'); return res.end(state()); }",
  "  if (req.url === '/config') return res.end(JSON.stringify(seen));",
  '  res.statusCode = 404; res.end();',
  '};',
  "const server = seen.config && seen.config.tlsCertFile ? require('https').createServer(pems(), handler) : require('http').createServer(handler);",
  "process.on('SIGHUP', () => { seen = { hups: seen.hups + 1, config: read() }; if (seen.config.tlsCertFile) server.setSecureContext(pems()); });",
  'server.listen(Number(process.env.ORCH_PORT), process.env.ORCH_HOST);',
].join('\n');

const standInImage = `orchestrator-stand-in:${uniqueName('aws')}`;
let moto: Moto;
let ec2: EC2Client;
let ca: TestCa;
let dir: string;
let hostKey: string;
let clientKeyPath: string;
let unroute: () => void;
/** The orchestrator's port: free on this machine, where each test's stand-in listens in turn. */
let orchestratorPort: number;

beforeAll(async () => {
  await Promise.all([ensureDockerEngine(), ensureSshd()]);
  dir = await mkdtemp(join(tmpdir(), 'aws-orchestrator-'));
  clientKeyPath = join(dir, 'client_key');
  const [host, client] = await Promise.all([generateKey(join(dir, 'host_key')), generateKey(clientKeyPath)]);
  hostKey = host!;
  await writeFile(join(dir, 'authorized_keys'), `${client}\n`);
  // `--`: the flags after the image name (--config) are the program's, not node's.
  await writeFile(join(dir, 'Dockerfile'), `FROM ${NODE_BASE_IMAGE}\nENTRYPOINT ${JSON.stringify(['node', '-e', STAND_IN_PROGRAM, '--'])}\n`);
  await runOk('docker', ['build', '-q', '--network', 'host', '-t', standInImage, dir], { env: { ...process.env, DOCKER_BUILDKIT: '0' }, timeoutMs: 120_000 });
  orchestratorPort = await freeBasePort([0]);
  ca = await createTestCa();
  moto = await startMoto();
  ec2 = moto.client();
  await ec2.send(new ImportKeyPairCommand({ KeyName: 'mine', PublicKeyMaterial: Buffer.from(client!) }));
  interceptConsole(moto.endpoint, () => [hostKey]);
  unroute = routeEmulatorAddresses();
}, ENGINE_SETUP_TIMEOUT_MS + 180_000);

afterAll(async () => {
  unroute?.();
  stopIntercepting();
  await moto?.stop();
  await ca?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
  await removeDockerObjects([], [standInImage]);
}, 60_000);

/** One cluster on moto with its stand-ins: sshds appear as its instances do. */
interface Rig {
  cluster: string;
  temp: TempCluster;
  config(flags?: Record<string, unknown>): ProvisionConfig;
  /** Its provider; `said` collects its progress lines. */
  provider(config: ProvisionConfig, said?: string[]): Ec2Provider;
  /** The sshd standing in for the orchestrator's instance, once it ran. */
  orchestratorSshd(): Sshd | undefined;
}

const rigs: Array<{ rig: Rig; cleanup: () => Promise<void> }> = [];

afterEach(async () => {
  for (const { cleanup } of rigs.splice(0)) await cleanup();
}, 60_000);

async function startRig(): Promise<Rig> {
  const cluster = uniqueName('orch').replace(/[^a-z0-9-]/g, '').slice(0, 30);
  const temp = await tempCluster(1);
  const sshPort = await freeBasePort([0]);
  const sshds: Sshd[] = [];
  let orchestratorSshd: Sshd | undefined;
  const serveSsh = (instance: Instance): Promise<Sshd> =>
    startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: join(dir, 'authorized_keys'), listenAddress: loopbackOf(instance), port: sshPort }).then((sshd) => {
      sshds.push(sshd);
      return sshd;
    });
  // The model containers answer on the worker's own loopback: --health-via ssh reaches them through its sshd.
  const backends: Backend[] = await Promise.all([0, 1].map((i) => startBackend(`w1-${temp.basePort + i}`, { port: temp.basePort + i })));
  const workers: InstanceWatch = watchInstances(ec2, cluster, async (instance) => void (await serveSsh(instance)));
  let watching = true;
  const orchestratorWatch = (async () => {
    while (watching && !orchestratorSshd) {
      const [instance] = await liveInstances(cluster, 'orchestrator');
      if (instance) orchestratorSshd = await serveSsh(instance);
      else await sleep(100);
    }
  })();
  const paths = remotePaths(cluster);
  const rig: Rig = {
    cluster,
    temp,
    config: (flags = {}) =>
      loadProvisionConfig({
        env: {},
        flags: {
          provider: 'aws',
          cluster,
          workers: 1,
          withOrchestrator: true,
          sshCidr: SSH_CIDR,
          clientCidr: CLIENT_CIDR,
          keyName: 'mine',
          sshKeyPath: clientKeyPath,
          sshUser: 'root',
          sshPort,
          orchestratorImage: standInImage,
          orchestratorPort,
          statePath: temp.statePath,
          basePort: temp.basePort,
          launchTimeoutMs: 60_000,
          logLevel: 'silent',
          ...flags,
        },
      }),
    provider: (config, said = []) => createProvider(config, createLogger('test', 'silent'), { ec2, pollSeconds: 1, say: (line) => said.push(line) }) as Ec2Provider,
    orchestratorSshd: () => orchestratorSshd,
  };
  rigs.push({
    rig,
    cleanup: async () => {
      watching = false;
      await Promise.allSettled([workers.stop(), orchestratorWatch]);
      await Promise.all([...sshds.map((s) => s.stop()), ...backends.map((b) => b.kill())]);
      await run('docker', ['rm', '-f', paths.container]);
      await rm(paths.dir, { recursive: true, force: true });
      // Its parent too, unless another test's deploy is in there.
      await rmdir(REMOTE_ROOT).catch(() => {});
      await temp.cleanup();
    },
  });
  return rig;
}

async function liveInstances(cluster: string, role: string): Promise<Instance[]> {
  const found = await ec2.send(
    new DescribeInstancesCommand({
      Filters: [
        { Name: `tag:${TAGS.cluster}`, Values: [cluster] },
        { Name: `tag:${TAGS.role}`, Values: [role] },
        { Name: 'instance-state-name', Values: ['pending', 'running'] },
      ],
    }),
  );
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

async function group(name: string) {
  const found = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [name] }] }));
  return found.SecurityGroups?.[0];
}

/** A group's rules, one source each, as `tcp FROM-TO CIDR-or-group-id`. */
function rulesOf(permissions: IpPermission[] | undefined): string[] {
  return (permissions ?? [])
    .flatMap((p) => [
      ...(p.IpRanges ?? []).map((r) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${r.CidrIp}`),
      ...(p.UserIdGroupPairs ?? []).map((g) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${g.GroupId}`),
    ])
    .sort();
}

const mode = async (path: string): Promise<string> => ((await stat(path)).mode & 0o777).toString(8);

describe('provision --provider aws --with-orchestrator', () => {
  it('launches the orchestrator instance in its own group, opens the model ports to that group only, and deploys it over SSH', { timeout: 120_000 }, async () => {
    const rig = await startRig();
    const config = rig.config();
    const report = await provisionCluster(config, { provider: rig.provider(config) });
    expect(report.started).toEqual([`w1-${rig.temp.basePort}`, `w1-${rig.temp.basePort + 1}`]);

    const [orchestrator] = await liveInstances(rig.cluster, 'orchestrator');
    const [worker] = await liveInstances(rig.cluster, 'worker');
    expect(orchestrator).toMatchObject({ InstanceType: 't3.small', MetadataOptions: { HttpTokens: 'required' } });
    expect(orchestrator!.Tags).toContainEqual({ Key: 'Name', Value: `${rig.cluster}-orchestrator` });

    const orchestratorGroup = await group(`${rig.cluster}-orchestrator`);
    const workerGroup = await group(`${rig.cluster}-workers`);
    expect(orchestrator!.SecurityGroups?.map((g) => g.GroupId)).toEqual([orchestratorGroup!.GroupId]);
    expect(rulesOf(orchestratorGroup!.IpPermissions)).toEqual([`tcp ${orchestratorPort}-${orchestratorPort} ${CLIENT_CIDR}`, `tcp 22-22 ${SSH_CIDR}`].sort());
    // The model ports: the orchestrator's group by reference, no CIDR; SSH: the operator, and the orchestrator's Docker driver.
    const first = rig.temp.basePort;
    expect(rulesOf(workerGroup!.IpPermissions)).toEqual(
      [`tcp 22-22 ${SSH_CIDR}`, `tcp 22-22 ${orchestratorGroup!.GroupId}`, `tcp ${first}-${first + 9} ${orchestratorGroup!.GroupId}`].sort(),
    );

    // Nothing secret in its user-data, which the metadata service and DescribeInstanceAttribute hand out.
    const attribute = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: orchestrator!.InstanceId, Attribute: 'userData' }));
    const userData = Buffer.from(attribute.UserData?.Value ?? '', 'base64').toString('utf8');
    expect(userData).toContain('installing Docker');
    expect(userData).toContain(`IMAGE=${standInImage}\n`);
    const clientKey = await readFile(clientKeyPath, 'utf8');
    expect(userData).not.toContain('PRIVATE KEY');
    expect(userData).not.toContain(worker!.PrivateIpAddress);

    // What arrived on the "instance": root-only files, the inventory at the workers' private addresses.
    const paths = remotePaths(rig.cluster);
    expect(await mode(paths.dir)).toBe('700');
    expect(await mode(join(paths.stateDir, 'keys'))).toBe('700');
    expect(await readFile(join(paths.stateDir, 'keys/workers.pem'), 'utf8')).toBe(clientKey);
    for (const file of ['state.json', 'keys/workers.pem', 'keys/known_hosts']) expect(await mode(join(paths.stateDir, file))).toBe('600');
    const inventory = stateFileSchema.parse(JSON.parse(await readFile(join(paths.stateDir, 'state.json'), 'utf8')));
    const privateAddress = worker!.PrivateIpAddress!;
    expect(privateAddress).not.toBe(worker!.PublicIpAddress);
    expect(inventory.workers).toEqual([
      expect.objectContaining({
        id: 'w1',
        host: privateAddress,
        runtime: {
          driver: 'docker',
          ssh: { host: privateAddress, port: config.sshPort, username: 'root', privateKeyPath: '/state/keys/workers.pem', knownHostsPath: '/state/keys/known_hosts' },
        },
      }),
    ]);
    expect(inventory.containers.map((c) => `${c.id}@${c.host}:${c.port}`)).toEqual([`w1-${first}@${privateAddress}:${first}`, `w1-${first + 1}@${privateAddress}:${first + 1}`]);
    expect(await readFile(join(paths.stateDir, 'keys/known_hosts'), 'utf8')).toBe(`[${privateAddress}]:${config.sshPort} ${hostKey}\n`);
    // The operator's known_hosts vouches for the orchestrator's instance too: its SSH was checked.
    expect(await readFile(join(rig.temp.dir, 'keys', `${rig.cluster}.known_hosts`), 'utf8')).toContain(`[${orchestrator!.PublicIpAddress}]:${config.sshPort} ${hostKey}`);

    // The container it started on the instance's engine.
    const container = await inspect(paths.container);
    expect(container).toMatchObject({
      State: { Running: true },
      Config: { Image: standInImage, User: '0:0' },
      HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'unless-stopped' } },
    });
    expect(container.Config.Env).toContain(`ORCH_PORT=${orchestratorPort}`);
    expect(container.Mounts).toEqual([expect.objectContaining({ Source: paths.stateDir, Destination: '/state' })]);

    // A re-run that changes nothing keeps it.
    await provisionCluster(config, { provider: rig.provider(config) });
    expect((await inspect(paths.container)).Id).toBe(container.Id);
  });

  it('records the orchestrator\'s URL in the state file, where `npm run status` finds it', { timeout: 120_000 }, async () => {
    const rig = await startRig();
    const config = rig.config();
    await provisionCluster(config, { provider: rig.provider(config) });
    const [orchestrator] = await liveInstances(rig.cluster, 'orchestrator');
    const url = `http://${orchestrator!.PublicIpAddress}:${orchestratorPort}`;
    expect((await readState(rig.temp.statePath)).orchestrator).toMatchObject({ url, instanceId: orchestrator!.InstanceId, running: true });

    // Without --url: the recorded orchestrator answers (its stand-in serves the inventory it was given).
    const status = await runEntry('status/src/main.ts', ['--file', rig.temp.statePath, '--json'], { env: motoCliEnv({ TEST_ROUTE_EMULATOR_ADDRESSES: '1' }) });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stderr).not.toContain('showing');
    expect(JSON.parse(status.stdout).workers[0].host).toBe((await liveInstances(rig.cluster, 'worker'))[0]!.PrivateIpAddress);
  });

  it('teardown terminates the orchestrator with the workers and deletes both groups', { timeout: 120_000 }, async () => {
    const rig = await startRig();
    const config = rig.config();
    await provisionCluster(config, { provider: rig.provider(config) });
    // Teardown reads no --with-orchestrator: it finds the orchestrator by its tags.
    const plain = rig.config({ withOrchestrator: false, clientCidr: undefined, healthVia: 'ssh' });
    await teardownCluster(plain, { provider: rig.provider(plain) });
    expect(await liveInstances(rig.cluster, 'orchestrator')).toEqual([]);
    expect(await liveInstances(rig.cluster, 'worker')).toEqual([]);
    expect(await group(`${rig.cluster}-orchestrator`)).toBeUndefined();
    expect(await group(`${rig.cluster}-workers`)).toBeUndefined();
  });

  it('moves the model ports between a CIDR and the orchestrator\'s group as the flag comes and goes, revoking the old rule', { timeout: 180_000 }, async () => {
    const rig = await startRig();
    const first = rig.temp.basePort;
    const without = rig.config({ withOrchestrator: false, clientCidr: undefined, healthVia: 'ssh' });
    await provisionCluster(without, { provider: rig.provider(without) });
    expect(rulesOf((await group(`${rig.cluster}-workers`))!.IpPermissions)).toEqual([`tcp 22-22 ${SSH_CIDR}`, `tcp ${first}-${first + 9} ${SSH_CIDR}`].sort());

    // With --upload-image its boot script pulls nothing, and provisioning copies the image only when the
    // instance lacks that very image: here the "instance's" engine is this one, so it has it.
    // (The copy itself, docker save | docker load over SSH, is the workers': aws-upload.test.ts.)
    const withIt = rig.config({ uploadImage: true, workerImage: standInImage });
    const said: string[] = [];
    await provisionCluster(withIt, { provider: rig.provider(withIt, said) });
    expect(said.filter((line) => line.startsWith('orchestrator: Loaded image'))).toEqual([]);
    const [orchestrator] = await liveInstances(rig.cluster, 'orchestrator');
    const attribute = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: orchestrator!.InstanceId, Attribute: 'userData' }));
    expect(Buffer.from(attribute.UserData?.Value ?? '', 'base64').toString('utf8')).not.toContain('docker pull');
    const orchestratorGroup = (await group(`${rig.cluster}-orchestrator`))!.GroupId!;
    expect(rulesOf((await group(`${rig.cluster}-workers`))!.IpPermissions)).toEqual(
      [`tcp 22-22 ${SSH_CIDR}`, `tcp 22-22 ${orchestratorGroup}`, `tcp ${first}-${first + 9} ${orchestratorGroup}`].sort(),
    );

    // Dropped again: the rule back to the CIDR, the orchestrator's instance and group gone.
    await provisionCluster(without, { provider: rig.provider(without) });
    expect(rulesOf((await group(`${rig.cluster}-workers`))!.IpPermissions)).toEqual([`tcp 22-22 ${SSH_CIDR}`, `tcp ${first}-${first + 9} ${SSH_CIDR}`].sort());
    expect(await liveInstances(rig.cluster, 'orchestrator')).toEqual([]);
    expect(await group(`${rig.cluster}-orchestrator`)).toBeUndefined();
  });

  it('--dry-run lists the orchestrator\'s instance and what its group opens, creating nothing', { timeout: 60_000 }, async () => {
    const rig = await startRig();
    const plan = await rig.provider(rig.config()).plan();
    const first = rig.temp.basePort;
    expect(plan.launches).toEqual(['worker w1: t3.small', 'orchestrator: t3.small']);
    expect(plan.openPorts).toEqual([
      `tcp 22 from ${SSH_CIDR}, security group ${rig.cluster}-orchestrator`,
      `tcp ${first}-${first + 9} from security group ${rig.cluster}-orchestrator`,
      `tcp 22 from ${SSH_CIDR} to the orchestrator`,
      `tcp ${orchestratorPort} from ${CLIENT_CIDR} to the orchestrator`,
    ]);
    expect(plan.denied).toEqual([]);

    // The same from the command line, flags spelled as a person types them.
    const cli = await runEntry(
      'provisioning/src/main.ts',
      [
        'provision', '--dry-run', '--provider', 'aws', '--cluster', rig.cluster, '--workers', '1', '--aws-endpoint', moto.endpoint,
        '--ssh-cidr', SSH_CIDR, '--with-orchestrator', '--client-cidr', CLIENT_CIDR, '--orchestrator-instance-type', 't3.medium', ...rig.temp.cliFlags,
      ],
      { env: motoCliEnv(MOTO_CREDENTIALS) },
    );
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(`security group ${rig.cluster}-orchestrator: create with tcp 22 from ${SSH_CIDR} to the orchestrator; tcp 8080 from ${CLIENT_CIDR} to the orchestrator`);
    expect(cli.stdout).toMatch(/orchestrator: launch one t3\.medium running inference-orchestrator:latest on port 8080/);
    expect(await liveInstances(rig.cluster, 'orchestrator')).toEqual([]);
    expect(await group(`${rig.cluster}-orchestrator`)).toBeUndefined();
  });
});

/** Recognisable, so that a scan finds it verbatim in any output. */
const ADMIN_TOKEN = 'admin-token-SCAN-orchconfig-8e2b6d4f0a';
/** Client key entries as the config holds them: names and hashes. */
const APP_KEY = { name: 'app', sha256: keyHash('orch_app-key-SCAN-0123456789abcdef'), scopes: ['infer'] };
const READER_KEY = { name: 'prometheus', sha256: keyHash('orch_reader-key-SCAN-0123456789abcd'), scopes: ['read'] };

/** An orchestrator config file in the test's folder (`settings` as JSON, or a text as it is); resolves with its path. */
async function configFile(name: string, settings: Record<string, unknown> | string): Promise<string> {
  const path = join(dir, `${name}.json`);
  await writeFile(path, typeof settings === 'string' ? settings : JSON.stringify(settings));
  return path;
}

/** The settings of a config file with TLS: the admin token, `keys`, `cert`'s files, and `more`. */
const tlsSettings = (cert: IssuedCertificate, keys: unknown[], more: Record<string, unknown> = {}) => ({
  adminToken: ADMIN_TOKEN,
  clientKeys: keys,
  clientRatePerSecond: 50,
  tlsCertFile: cert.certFile,
  tlsKeyFile: cert.keyFile,
  ...more,
});

/** What the uploaded config holds: the same, the TLS paths where the container sees them. */
const uploadedSettings = (settings: Record<string, unknown>) => ({ ...settings, tlsCertFile: '/state/tls/cert.pem', tlsKeyFile: '/state/tls/key.pem' });

/** GET `path` of the stand-in on this machine over TLS, trusting the test CA alone: its body and the certificate it served. */
function getVerified(path: string): Promise<{ body: string; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: orchestratorPort, path, ca: ca.pem, agent: false }, (res) => {
      const { fingerprint256 } = (res.socket as TLSSocket).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ body, fingerprint256 }));
      res.once('error', reject);
    }).once('error', reject);
  });
}

/** What the stand-in read last (at start or on SIGHUP), and how many SIGHUPs it got. */
const seenConfig = async (): Promise<{ hups: number; config: Record<string, unknown> }> => JSON.parse((await getVerified('/config')).body);

/** The user-data of the cluster's instances, decoded: EC2 and the metadata service hand it to anyone who may read it. */
async function userDataOf(cluster: string): Promise<string> {
  const instances = [...(await liveInstances(cluster, 'orchestrator')), ...(await liveInstances(cluster, 'worker'))];
  const kept = await Promise.all(instances.map((i) => ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: i.InstanceId, Attribute: 'userData' }))));
  return kept.map((a) => Buffer.from(a.UserData?.Value ?? '', 'base64').toString('utf8')).join('\n');
}

/** The lines of a PEM private key that hold key material. */
const keyLines = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).split('\n').filter((line) => line && !line.startsWith('-----'));

describe('provision --with-orchestrator --orchestrator-config', () => {
  /** One provision run with the config file `settings`; resolves with its progress lines and what it printed and recorded, for the secret scan. */
  async function provisionWith(rig: Rig, name: string, settings: Record<string, unknown>): Promise<{ said: string[]; outputs: string[] }> {
    const config = rig.config({ orchestratorConfig: await configFile(name, settings) });
    const said: string[] = [];
    const report: ProvisionReport = await provisionCluster(config, { provider: rig.provider(config, said) });
    return { said, outputs: [said.join('\n'), formatProvisionReport(report), JSON.stringify(report), await readFile(rig.temp.statePath, 'utf8')] };
  }

  it('uploads the config file and the TLS files it names root-only, at the paths the container sees, starts it with --config and records an https URL', { timeout: 120_000 }, async () => {
    const rig = await startRig();
    const cert = await ca.issue(`${rig.cluster}-a`);
    const settings = tlsSettings(cert, [APP_KEY, READER_KEY]);
    const { said, outputs } = await provisionWith(rig, 'tls', settings);

    const paths = remotePaths(rig.cluster);
    expect(JSON.parse(await readFile(join(paths.stateDir, 'orchestrator.json'), 'utf8'))).toEqual(uploadedSettings(settings));
    expect(await readFile(join(paths.stateDir, 'tls/cert.pem'), 'utf8')).toBe(await readFile(cert.certFile, 'utf8'));
    expect(await readFile(join(paths.stateDir, 'tls/key.pem'), 'utf8')).toBe(await readFile(cert.keyFile, 'utf8'));
    for (const file of ['orchestrator.json', 'tls/cert.pem', 'tls/key.pem']) expect(await mode(join(paths.stateDir, file))).toBe('600');
    expect(await mode(join(paths.stateDir, 'tls'))).toBe('700');

    // The flags after the image name are the orchestrator's.
    expect((await inspect(paths.container)).Config.Cmd).toEqual(['--config', '/state/orchestrator.json']);
    // It read that file and serves the certificate it names: a client trusting the CA alone verifies it for 127.0.0.1.
    const served = await getVerified('/config');
    expect(served.fingerprint256).toBe(cert.fingerprint256);
    expect(JSON.parse(served.body)).toEqual({ hups: 0, config: uploadedSettings(settings) });

    const [orchestrator] = await liveInstances(rig.cluster, 'orchestrator');
    const url = `https://${orchestrator!.PublicIpAddress}:${orchestratorPort}`;
    expect((await readState(rig.temp.statePath)).orchestrator).toMatchObject({ url, instanceId: orchestrator!.InstanceId, running: true });
    expect(outputs[1]).toContain(`npm run load -- --url ${url}/new_request`);
    expect(said).toContain(`orchestrator started at ${url} (instance ${orchestrator!.InstanceId})`);

    // The admin token and the TLS key went over SSH alone: in no output, no recorded file, no user-data.
    const secrets = [ADMIN_TOKEN, ...(await keyLines(cert.keyFile))];
    const texts = [...outputs, await userDataOf(rig.cluster)];
    expect(secrets.filter((secret) => texts.some((text) => text.includes(secret)))).toEqual([]);
  });

  it('a re-run where only the config file or its TLS files changed rewrites them and sends SIGHUP, keeping the container; another change restarts it', { timeout: 240_000 }, async () => {
    const rig = await startRig();
    const [first, renewed] = await Promise.all([ca.issue(`${rig.cluster}-1`), ca.issue(`${rig.cluster}-2`)]);
    const paths = remotePaths(rig.cluster);
    const outputs: string[] = [];
    const run = async (name: string, settings: Record<string, unknown>): Promise<string[]> => {
      const result = await provisionWith(rig, name, settings);
      outputs.push(...result.outputs);
      return result.said;
    };
    await run('v1', tlsSettings(first, [APP_KEY]));
    const started = await inspect(paths.container);

    // A second key beside the first (clients move over before the old one goes) and a renewed certificate.
    const rotated = tlsSettings(renewed, [APP_KEY, READER_KEY]);
    const reloaded = await run('v2', rotated);
    expect(reloaded).toContainEqual(expect.stringMatching(/^orchestrator: only its config file or TLS files changed: .*SIGHUP/));
    expect(reloaded).toContainEqual(expect.stringMatching(/^orchestrator reloaded at https:\/\//));
    const after = await inspect(paths.container);
    expect([after.Id, after.State.StartedAt]).toEqual([started.Id, started.State.StartedAt]);
    expect(await readFile(join(paths.stateDir, 'tls/key.pem'), 'utf8')).toBe(await readFile(renewed.keyFile, 'utf8'));
    expect(JSON.parse(await readFile(join(paths.stateDir, 'orchestrator.json'), 'utf8'))).toEqual(uploadedSettings(rotated));
    // The running process got one SIGHUP, read the new file, and serves the renewed certificate.
    expect((await getVerified('/health')).fingerprint256).toBe(renewed.fingerprint256);
    expect(await seenConfig()).toEqual({ hups: 1, config: uploadedSettings(rotated) });

    // The same content from another file: nothing to do.
    const kept = await run('v2-copy', rotated);
    expect(kept).toContainEqual(expect.stringMatching(/^orchestrator kept at https:\/\//));
    expect((await seenConfig()).hups).toBe(1);

    // A setting SIGHUP does not apply: a new container, started with it.
    const restarted = await run('v3', { ...rotated, maxQueue: 5 });
    expect(restarted).toContainEqual(expect.stringMatching(/^orchestrator started at https:\/\//));
    expect((await inspect(paths.container)).Id).not.toBe(started.Id);
    expect(await seenConfig()).toEqual({ hups: 0, config: uploadedSettings({ ...rotated, maxQueue: 5 }) });

    // No config file any more: started without one, and the old files (the admin token, the TLS key) are gone from the instance.
    const plain = rig.config();
    await provisionCluster(plain, { provider: rig.provider(plain) });
    expect((await inspect(paths.container)).Config.Cmd ?? []).toEqual([]);
    for (const file of ['orchestrator.json', 'tls/cert.pem', 'tls/key.pem']) await expect(stat(join(paths.stateDir, file))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readState(rig.temp.statePath)).orchestrator?.url).toMatch(/^http:\/\//);

    const secrets = [ADMIN_TOKEN, ...(await keyLines(first.keyFile)), ...(await keyLines(renewed.keyFile))];
    const texts = [...outputs, await userDataOf(rig.cluster)];
    expect(secrets.filter((secret) => texts.some((text) => text.includes(secret)))).toEqual([]);
  });

  it('a bad config file, or one setting what provisioning sets, stops the run before anything is created, in one line that shows no secret', { timeout: 120_000 }, async () => {
    const rig = await startRig();
    const [cert, other] = await Promise.all([ca.issue(`${rig.cluster}-c`), ca.issue(`${rig.cluster}-o`)]);
    const cases: Array<[string, Record<string, unknown> | string, RegExp]> = [
      // The parser's own message would quote the text around the fault: here, the token.
      ['not JSON', '{"adminToken": SCAN-token-unquoted-0123456789}', /cannot read it as JSON \(not valid JSON\)/],
      ['an unknown key', { adminToken: ADMIN_TOKEN, clientKey: [] }, /unknown key "clientKey"/],
      ['a short admin token', { adminToken: 'admin-SCAN-x' }, /config key "adminToken" \(config file\)/],
      ['a key entry without its hash', { adminToken: ADMIN_TOKEN, clientKeys: [{ name: 'app' }] }, /config key "clientKeys\.0\.sha256"/],
      ['its port', { port: 9000 }, /"port" is provisioning's to set/],
      ['its address', { host: '0.0.0.0' }, /"host" is provisioning's to set/],
      ['its state file', { statePath: '/tmp/state.json' }, /"statePath" is provisioning's to set/],
      ['a certificate without its key', { tlsCertFile: cert.certFile }, /"tlsKeyFile"/],
      ['another certificate\'s key', { adminToken: ADMIN_TOKEN, tlsCertFile: cert.certFile, tlsKeyFile: other.keyFile }, /is not the key of the certificate/],
      ['a certificate that is not there', { tlsCertFile: join(dir, 'missing.pem'), tlsKeyFile: cert.keyFile }, /tlsCertFile .*missing\.pem: cannot read it/],
    ];
    for (const [what, settings, reason] of cases) {
      const config = rig.config({ orchestratorConfig: await configFile('bad', settings) });
      const error = await provisionCluster(config, { provider: rig.provider(config) }).then(
        () => undefined,
        (thrown: { code?: string; message: string }) => thrown,
      );
      expect(error, what).toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(reason) });
      expect(error!.message, what).toMatch(/^config key "orchestratorConfig" \(.*bad\.json\): [^\n]*$/);
      expect(error!.message, what).not.toContain('SCAN');
    }

    // From the command line: --orchestrator-config as a person types it; the cost guard's plan checks the file before it asks.
    const cli = await runEntry(
      'provisioning/src/main.ts',
      [
        'provision', '--provider', 'aws', '--cluster', rig.cluster, '--workers', '1', '--aws-endpoint', moto.endpoint, '--ssh-cidr', SSH_CIDR,
        '--with-orchestrator', '--client-cidr', CLIENT_CIDR, '--orchestrator-config', await configFile('bad', { adminToken: ADMIN_TOKEN, port: 9000 }), ...rig.temp.cliFlags,
      ],
      { env: motoCliEnv(MOTO_CREDENTIALS) },
    );
    expect(cli.code).toBe(2);
    expect(cli.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^error: config key "orchestratorConfig" \(.*bad\.json\): "port" is provisioning's to set.*\[CONFIG_INVALID\]$/)]);
    expect(`${cli.stdout}${cli.stderr}`).not.toContain(ADMIN_TOKEN);

    expect(await liveInstances(rig.cluster, 'orchestrator')).toEqual([]);
    expect(await liveInstances(rig.cluster, 'worker')).toEqual([]);
    expect(await group(`${rig.cluster}-orchestrator`)).toBeUndefined();
    expect(await group(`${rig.cluster}-workers`)).toBeUndefined();
  });
});

describe('--with-orchestrator config', () => {
  const load = (flags: Record<string, unknown>) =>
    loadProvisionConfig({ env: {}, flags: { provider: 'aws', sshCidr: SSH_CIDR, withOrchestrator: true, clientCidr: CLIENT_CIDR, ...flags } });

  it('checks the model ports through SSH by default, and refuses directly (they are closed to this machine)', () => {
    expect(load({})).toMatchObject({ healthVia: 'ssh', orchestratorPort: 8080, orchestratorImage: 'inference-orchestrator:latest', orchestratorInstanceType: 't3.small' });
    expect(() => load({ healthVia: 'direct' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('"healthVia"') }));
    expect(loadProvisionConfig({ env: {}, flags: { provider: 'aws', sshCidr: SSH_CIDR } }).healthVia).toBe('direct');
  });

  it('takes orchestratorConfig from a flag or PROVISION_ORCHESTRATOR_CONFIG, and only with withOrchestrator', () => {
    expect(load({ orchestratorConfig: 'orchestrator.json' }).orchestratorConfig).toBe('orchestrator.json');
    const fromEnv = loadProvisionConfig({ env: { PROVISION_ORCHESTRATOR_CONFIG: 'from-env.json' }, flags: { provider: 'aws', sshCidr: SSH_CIDR, withOrchestrator: true, clientCidr: CLIENT_CIDR } });
    expect(fromEnv.orchestratorConfig).toBe('from-env.json');
    expect(load({}).orchestratorConfig).toBeUndefined();
    expect(() => load({ withOrchestrator: false, clientCidr: undefined, healthVia: 'ssh', orchestratorConfig: 'orchestrator.json' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('"orchestratorConfig"') }),
    );
  });

  it('requires clientCidr, refuses 0.0.0.0/0 unless allowWorldOpen, and refuses orchestratorCidr', () => {
    expect(() => load({ clientCidr: undefined })).toThrow(expect.objectContaining({ message: expect.stringContaining('"clientCidr"') }));
    expect(() => load({ clientCidr: '0.0.0.0/0' })).toThrow(expect.objectContaining({ message: expect.stringContaining('"clientCidr"') }));
    expect(load({ clientCidr: '0.0.0.0/0', allowWorldOpen: true }).clientCidr).toBe('0.0.0.0/0');
    expect(() => load({ orchestratorCidr: '10.0.0.0/16' })).toThrow(expect.objectContaining({ message: expect.stringContaining('"orchestratorCidr"') }));
    expect(() => load({ provider: 'local' })).toThrow(expect.objectContaining({ message: expect.stringContaining('"withOrchestrator"') }));
  });
});

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { Ec2Provider } from '../../provisioning/src/aws/ec2-provider.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { fakeAwsEnv, FakeEc2, rulesOf, tagsOf } from '../helpers/fake-ec2.js';
import { readState } from '../helpers/orchestrator-process.js';

const log = createLogger('test', 'silent');
const SSH_CIDR = '203.0.113.7/32';
const ORCH_CIDR = '198.51.100.9/32';

let fake: FakeEc2;
let endpoint: string;
let cluster: TempCluster;
let backends: Backend[] = [];

beforeEach(async () => {
  fake = new FakeEc2();
  endpoint = await fake.listen();
  cluster = await tempCluster(1);
});
afterEach(async () => {
  await fake.stop();
  await Promise.all(backends.map((b) => b.kill()));
  backends = [];
  await cluster.cleanup();
});

function awsConfig(flags: Record<string, unknown> = {}): ProvisionConfig {
  return loadProvisionConfig({
    env: {},
    flags: {
      provider: 'aws',
      cluster: 'demo',
      workers: 2,
      sshCidr: SSH_CIDR,
      orchestratorCidr: ORCH_CIDR,
      statePath: cluster.statePath,
      basePort: cluster.basePort,
      launchTimeoutMs: 3_000,
      logLevel: 'silent',
      ...flags,
    },
  });
}

const provider = (config: ProvisionConfig) => createProvider(config, log, { ec2: fake.client(), pollSeconds: 1 });

/** The model containers of worker k (1-based) on its fake instance's address 127.0.0.k. */
async function serveWorker(k: number): Promise<void> {
  for (const port of [cluster.basePort, cluster.basePort + 1]) backends.push(await startBackend(`w${k}-${port}`, { host: `127.0.0.${k}`, port }));
}

describe('EC2 provisioning against an intercepted EC2 API', () => {
  it('creates a key pair, a least-privilege security group and one tagged instance per worker whose user-data starts the compose file', async () => {
    await serveWorker(1);
    await serveWorker(2);
    const config = awsConfig();
    const report = await provisionCluster(config, { provider: provider(config) });

    expect(fake.actions().filter((a) => a !== 'DescribeInstances' && a !== 'GetConsoleOutput')).toEqual([
      'DescribeKeyPairs',
      'CreateKeyPair',
      'DescribeSecurityGroups',
      'CreateSecurityGroup',
      'AuthorizeSecurityGroupIngress',
      'DescribeImages',
      'RunInstances',
      'RunInstances',
    ]);
    const call = (action: string) => fake.calls.filter((c) => c.action === action);
    expect(call('CreateKeyPair')[0]!.params).toMatchObject({ KeyName: 'demo-workers', KeyType: 'ed25519', 'TagSpecification.1.ResourceType': 'key-pair' });
    // Only SSH from the operator and the two model ports from the orchestrator: nothing open to the world.
    expect(rulesOf(call('AuthorizeSecurityGroupIngress')[0]!.params)).toEqual([
      `tcp 22-22 from ${SSH_CIDR}`,
      `tcp ${cluster.basePort}-${cluster.basePort + 1} from ${ORCH_CIDR}`,
    ]);
    const runs = call('RunInstances').map((c) => c.params);
    for (const [i, run] of runs.entries()) {
      expect(run).toMatchObject({ ImageId: 'ami-0bbb', InstanceType: 't3.small', MinCount: '1', MaxCount: '1', KeyName: 'demo-workers', 'SecurityGroupId.1': 'sg-2' });
      expect(tagsOf(run, 'TagSpecification.1.')).toEqual({
        'io.inference-orchestrator.cluster': 'demo',
        'io.inference-orchestrator.role': 'worker',
        'io.inference-orchestrator.worker': `w${i + 1}`,
        Name: `demo-w${i + 1}`,
      });
      const script = Buffer.from(run.UserData!, 'base64').toString('utf8');
      expect(script).toMatch(/^#!\/bin\/bash\n/);
      expect(script).toContain(`WORKER_ID=w${i + 1}\n`);
      expect(script).toContain('usermod -aG docker ubuntu');
      expect(script).toContain(await readFile('docker-compose.worker.yml', 'utf8').then((t) => t.trimEnd()));
    }

    // The private key is saved for SSH only by its owner; the host keys come from the console.
    const keyPath = join(cluster.dir, 'keys', 'demo.pem');
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    expect(await readFile(join(cluster.dir, 'keys', 'demo.known_hosts'), 'utf8')).toBe(
      '127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY\n127.0.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY\n',
    );
    const state = await readState(cluster.statePath);
    expect(state.workers.map((w) => [w.id, w.provider, w.host, w.runtime])).toEqual(
      [1, 2].map((k) => [
        `w${k}`,
        'aws',
        `127.0.0.${k}`,
        { driver: 'docker', ssh: { host: `127.0.0.${k}`, port: 22, username: 'ubuntu', privateKeyPath: keyPath, knownHostsPath: join(cluster.dir, 'keys', 'demo.known_hosts') } },
      ]),
    );
    expect(state.containers.map((c) => c.id)).toEqual(report.started);
    expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`, `w2-${cluster.basePort}`, `w2-${cluster.basePort + 1}`]);
    // No secret in the status store.
    const raw = await readFile(cluster.statePath, 'utf8');
    expect(raw).not.toMatch(/PRIVATE KEY|test-secret|AKIDTEST/);
  });

  it('is idempotent: a re-run finds the tagged instances and launches nothing', async () => {
    await serveWorker(1);
    await serveWorker(2);
    const config = awsConfig();
    await provisionCluster(config, { provider: provider(config) });
    const before = fake.calls.length;
    const report = await provisionCluster(config, { provider: provider(config) });
    const again = fake.calls.slice(before).map((c) => c.action);
    expect(again).not.toContain('RunInstances');
    expect(again).not.toContain('CreateKeyPair');
    expect(again).not.toContain('CreateSecurityGroup');
    expect(report.kept).toHaveLength(4);
    expect(fake.live()).toHaveLength(2);
  });

  it('tears down: terminates the instances, deletes the security group and the key pair it created, clears the inventory', async () => {
    await serveWorker(1);
    await serveWorker(2);
    const config = awsConfig();
    await provisionCluster(config, { provider: provider(config) });
    const report = await teardownCluster(config, { provider: provider(config) });
    expect(fake.calls.find((c) => c.action === 'TerminateInstances')!.params).toMatchObject({ 'InstanceId.1': 'i-00000001', 'InstanceId.2': 'i-00000002' });
    expect(fake.live()).toEqual([]);
    expect(fake.groups.size).toBe(0);
    expect(fake.keyPairs.size).toBe(0);
    expect(report.stopped).toHaveLength(4);
    await expect(stat(join(cluster.dir, 'keys', 'demo.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readState(cluster.statePath)).workers).toEqual([]);
  });

  it('retries a throttled call (RequestLimitExceeded)', async () => {
    await serveWorker(1);
    const config = awsConfig({ workers: 1 });
    fake.throttle.set('RunInstances', 1);
    await provisionCluster(config, { provider: provider(config) });
    expect(fake.actions().filter((a) => a === 'RunInstances')).toHaveLength(2);
    expect(fake.live()).toHaveLength(1);
  });

  it('reports a missing permission as AWS_UNAUTHORIZED naming the action, creating no instance', async () => {
    const config = awsConfig();
    fake.denied.add('RunInstances');
    await expect(provisionCluster(config, { provider: provider(config) })).rejects.toMatchObject({
      code: 'AWS_UNAUTHORIZED',
      message: expect.stringContaining('ec2:RunInstances'),
    });
    expect(fake.live()).toEqual([]);
  });

  it('names exactly the containers that never answered, and leaves every instance for teardown', async () => {
    await serveWorker(1);
    const config = awsConfig();
    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'WORKERS_UNHEALTHY' });
    expect((error as Error).message).toContain(`2 of 4 containers never answered /health: w2-${cluster.basePort} on i-00000002`);
    expect((error as Error).message).toContain('npm run teardown -- --provider aws');
    expect(fake.live()).toHaveLength(2);
    await teardownCluster(config, { provider: provider(config) });
    expect(fake.live()).toEqual([]);
  });

  it('dry run: shows the plan and checks permissions with DryRun, creating nothing', async () => {
    const config = awsConfig();
    const plan = await (provider(config) as Ec2Provider).plan();
    expect(plan.steps).toEqual([
      `key pair demo-workers: create, private key saved to ${join(cluster.dir, 'keys', 'demo.pem')} (mode 0600)`,
      `security group demo-workers: create with tcp 22 from ${SSH_CIDR}; tcp ${cluster.basePort}-${cluster.basePort + 1} from ${ORCH_CIDR}`,
      'AMI ami-0bbb (ubuntu-noble-new)',
      `worker w1: launch one t3.small with two model containers on ports ${cluster.basePort} and ${cluster.basePort + 1}`,
      `worker w2: launch one t3.small with two model containers on ports ${cluster.basePort} and ${cluster.basePort + 1}`,
    ]);
    expect(plan.denied).toEqual([]);
    expect(fake.calls.filter((c) => /^(Create|Run|Authorize)/.test(c.action)).every((c) => c.params.DryRun === 'true')).toBe(true);
    expect(fake.keyPairs.size + fake.groups.size + fake.instances.length).toBe(0);

    fake.denied.add('RunInstances');
    expect((await (provider(config) as Ec2Provider).plan()).denied).toEqual(['RunInstances']);
  });
});

describe('npm run provision -- --provider aws (the CLI)', () => {
  const cli = (extra: string[], env: Record<string, string>) =>
    runEntry(
      'provisioning/src/main.ts',
      ['provision', '--provider', 'aws', '--cluster', 'demo', '--ssh-cidr', SSH_CIDR, '--aws-endpoint', endpoint, '--region', 'us-east-1', ...cluster.cliFlags, ...extra],
      { env: fakeAwsEnv(env) },
    );
  const credentials = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test-secret' };

  it('--dry-run prints the plan and exits 0', async () => {
    const result = await cli(['--dry-run'], credentials);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('plan for cluster "demo" (dry run: nothing was created)');
    expect(result.stdout).toContain('worker w4: launch one t3.small');
    expect(result.stdout).toContain('permissions: every action above is allowed');
    expect(fake.instances).toEqual([]);
  });

  it('--dry-run without a permission: the plan, then one line naming it, exit 1', async () => {
    fake.denied.add('RunInstances');
    const result = await cli(['--dry-run'], credentials);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual(['error: not allowed to call ec2:RunInstances; the IAM actions provisioning needs are listed in the README [AWS_UNAUTHORIZED]']);
  });

  it('without credentials: one line and exit 1, no call made', async () => {
    const result = await cli([], {});
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: no AWS credentials found: .* \[AWS_CREDENTIALS_MISSING\]$/)]);
    expect(fake.calls).toEqual([]);
  });
});

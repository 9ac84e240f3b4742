import {
  CreateSecurityGroupCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
  type Instance,
} from '@aws-sdk/client-ec2';
import nock from 'nock';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import type { ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import type { Backend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { useTempCluster } from '../helpers/cluster.js';
import { ec2ErrorXml } from '../helpers/ec2-intercept.js';
import { MOTO_CREDENTIALS, motoCliEnv, NEWEST_UBUNTU, startMoto, type Moto } from '../helpers/moto.js';
import { serveModelContainers, watchInstances, type InstanceWatch } from '../helpers/moto-instances.js';
import { routeEmulatorAddresses } from '../helpers/network-guard.js';

// moto is the EC2 these tests provision against; nock, in front of it, gives the answers moto
// never gives (throttling, a failed launch, DependencyViolation, instances that stay pending) for
// the calls chosen by their form body, and lets every other call through to moto.

const log = createLogger('test', 'silent');
/** The test's own calls to moto carry this header, which no interceptor matches: they see moto as it is. */
const OBSERVER = 'x-test-observer';
const XML = { 'content-type': 'text/xml;charset=UTF-8' };

type Form = Record<string, string>;
type Reply = (form: Form, request: Request) => [number, string] | Promise<[number, string]>;

let moto: Moto;
/** moto as it is, for the assertions and the instance watch. */
let observer: EC2Client;
let unroute: () => void;
const cluster = useTempCluster(1);
let watch: InstanceWatch | undefined;
let backends: Backend[] = [];
let clusters = 0;

beforeAll(async () => {
  moto = await startMoto();
  observer = moto.client();
  observer.middlewareStack.add(
    (next) => (args) => {
      (args.request as { headers: Record<string, string> }).headers[OBSERVER] = '1';
      return next(args);
    },
    { step: 'build', name: 'testObserverHeader' },
  );
  unroute = routeEmulatorAddresses();
}, 60_000);

afterEach(async () => {
  nock.cleanAll();
  await watch?.stop();
  watch = undefined;
  await Promise.all(backends.map((b) => b.kill()));
  backends = [];
});

afterAll(async () => {
  nock.restore();
  unroute?.();
  await moto?.stop();
});

/** Answer the next `times` calls of `action` whose form matches `when` with `reply`; every other call reaches moto. */
function intercept(action: string, times: number | 'always', reply: Reply, when: (form: Form) => boolean = () => true): nock.Scope {
  const scope = nock(moto.endpoint, { allowUnmocked: true, badheaders: [OBSERVER] }).persist(times === 'always');
  const interceptor = scope.post('/', (form: Form) => form.Action === action && when(form));
  (times === 'always' ? interceptor : interceptor.times(times)).reply(async (req: Request) => {
    const [status, body] = await reply(Object.fromEntries(new URLSearchParams(await req.clone().text())), req);
    return [status, body, XML];
  });
  return scope;
}

/** EC2's error answer. */
const ec2Error =
  (status: number, code: string, message: (form: Form) => string): Reply =>
  (form) => [status, ec2ErrorXml(code, message(form))];

/** moto's own answer to the same call, edited by `edit`. */
const fromMoto =
  (edit: (xml: string) => string): Reply =>
  async (_form, req) => {
    const answer = await request(moto.endpoint, {
      method: 'POST',
      headers: { 'content-type': req.headers.get('content-type')!, authorization: req.headers.get('authorization')!, [OBSERVER]: '1' },
      body: await req.text(),
    });
    return [answer.statusCode, edit(await answer.body.text())];
  };

/** Every instance in the answer shown as still `pending`. */
const stillPending = fromMoto((xml) => xml.replaceAll(/<instanceState><code>\d+<\/code><name>[a-z-]+<\/name><\/instanceState>/g, '<instanceState><code>0</code><name>pending</name></instanceState>'));

/** The waiters' DescribeInstances (by instance id), not provisioning's lookups by tag. */
const byInstanceId = (form: Form): boolean => 'InstanceId.1' in form;

/** A RunInstances that launches `workerId` (its instance tags name it). */
const launching =
  (workerId: string) =>
  (form: Form): boolean =>
    Object.entries(form).some(([key, value]) => /^TagSpecification\.1\.Tag\.\d+\.Key$/.test(key) && value === TAGS.worker && form[key.replace(/Key$/, 'Value')] === workerId);

function awsConfig(flags: Record<string, unknown> = {}): ProvisionConfig {
  return cluster.config({
    provider: 'aws',
    cluster: `faults-${++clusters}`,
    workers: 2,
    sshCidr: '203.0.113.7/32',
    // The image lookup is aws.test.ts's subject; these tests name the image.
    amiId: NEWEST_UBUNTU.ami_id,
    // moto's console output has no cloud-init host key block (aws-upload.test.ts covers host keys).
    sshHostKeyCheck: false,
    launchTimeoutMs: 30_000,
    ...flags,
  });
}

const provider = (config: ProvisionConfig) => createProvider(config, log, { ec2: moto.client(), pollSeconds: 1 });

/** Start each new instance's model containers, as its user-data would, while provisioning waits. */
function bootInstances(config: ProvisionConfig): void {
  watch = watchInstances(observer, config.cluster, async (instance) => {
    backends.push(...(await serveModelContainers(instance, [config.basePort, config.basePort + 1])));
  });
}

/** The cluster's worker instances in moto, every state. */
async function clusterInstances(name: string): Promise<Instance[]> {
  const found = await observer.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [name] }] }));
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

/** The same, each as `w1 i-0abc running`. */
async function instancesOf(name: string): Promise<string[]> {
  return (await clusterInstances(name)).map((i) => `${tagOf(i, TAGS.worker)} ${i.InstanceId} ${i.State?.Name}`).sort();
}

function tagOf(instance: Instance, key: string): string | undefined {
  return instance.Tags?.find((t) => t.Key === key)?.Value;
}

const live = (instances: string[]) => instances.filter((i) => i.endsWith(' running') || i.endsWith(' pending'));

async function groupsOf(name: string): Promise<string[]> {
  const found = await observer.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [name] }] }));
  return (found.SecurityGroups ?? []).map((g) => `${g.GroupName} ${g.GroupId}`);
}

const containersOf = (config: ProvisionConfig, workerId: string) => [`${workerId}-${config.basePort}`, `${workerId}-${config.basePort + 1}`];

describe('EC2 faults an emulator cannot produce, injected with nock in front of moto', () => {
  it('throttling: RequestLimitExceeded on RunInstances and on the wait is retried, and each worker still gets exactly one instance', { timeout: 60_000 }, async () => {
    const config = awsConfig();
    bootInstances(config);
    const throttled = ec2Error(503, 'RequestLimitExceeded', () => 'Request limit exceeded.');
    const throttledTokens: string[] = [];
    const launches = intercept('RunInstances', 2, (form, req) => {
      throttledTokens.push(form.ClientToken!);
      return throttled(form, req);
    });
    const waits = intercept('DescribeInstances', 1, throttled, byInstanceId);

    const report = await provisionCluster(config, { provider: provider(config) });

    expect(launches.isDone() && waits.isDone()).toBe(true);
    expect(report.started).toEqual([...containersOf(config, 'w1'), ...containersOf(config, 'w2')]);
    const instances = await clusterInstances(config.cluster);
    expect(instances.map((i) => `${tagOf(i, TAGS.worker)} ${i.State?.Name}`).sort()).toEqual(['w1 running', 'w2 running']);
    // Every attempt carried the token of the launch that got through: EC2's idempotency key, so a
    // retry after a lost answer would return that instance rather than launch a second one.
    const w1 = instances.find((i) => tagOf(i, TAGS.worker) === 'w1')!;
    expect(throttledTokens).toEqual([w1.ClientToken, w1.ClientToken]);
  });

  it('half-failed launch: one line naming the worker not launched and the one left; a re-run adopts it, teardown removes everything', { timeout: 60_000 }, async () => {
    const config = awsConfig();
    // InsufficientInstanceCapacity is a server error (500): the SDK retries it, and every try fails.
    intercept('RunInstances', 'always', ec2Error(500, 'InsufficientInstanceCapacity', () => 'We currently do not have sufficient t3.small capacity in the Availability Zone you requested (us-east-1a).'), launching('w2'));

    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'PARTIAL_LAUNCH' });
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^worker w2 was not launched \(ec2:RunInstances failed: InsufficientInstanceCapacity: .*\); w1 was launched and tagged with the cluster: /);
    // Nothing orphaned: the instance that was launched carries the cluster's tags.
    const left = await instancesOf(config.cluster);
    expect(live(left)).toEqual([expect.stringMatching(/^w1 i-\w+ (pending|running)$/)]);
    const w1 = left[0]!.split(' ')[1];

    nock.cleanAll();
    bootInstances(config);
    const rerun = await provisionCluster(config, { provider: provider(config) });
    expect(rerun.kept).toEqual(containersOf(config, 'w1'));
    expect(rerun.started).toEqual(containersOf(config, 'w2'));
    const both = await instancesOf(config.cluster);
    expect(both).toHaveLength(2);
    expect(both).toContain(`w1 ${w1} running`);

    await teardownCluster(config, { provider: provider(config) });
    expect(live(await instancesOf(config.cluster))).toEqual([]);
    expect(await groupsOf(config.cluster)).toEqual([]);
  });

  it('the provisioning CLI prints an EC2 failure as one line with its code and exits 1', { timeout: 60_000 }, async () => {
    // nock cannot reach into the CLI's process: moto's own refusal (a group of that name, made by
    // hand, untagged) takes the same path from the library's AwsApiError to the terminal.
    const name = `faults-${++clusters}`;
    await observer.send(new CreateSecurityGroupCommand({ GroupName: `${name}-workers`, Description: 'made by hand' }));
    const result = await runEntry(
      'provisioning/src/main.ts',
      ['provision', '--yes', '--provider', 'aws', '--cluster', name, '--workers', '1', '--ssh-cidr', '203.0.113.7/32', '--aws-endpoint', moto.endpoint, '--ami-id', NEWEST_UBUNTU.ami_id, ...cluster.cliFlags],
      { env: motoCliEnv({ ...MOTO_CREDENTIALS }) },
    );
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('[provision] '));
    expect(lines).toEqual([expect.stringMatching(/^error: ec2:CreateSecurityGroup failed: InvalidGroup\.Duplicate: .+ \[AWS_ERROR\]$/)]);
    expect(await instancesOf(name)).toEqual([]);
  });

  it('DependencyViolation on DeleteSecurityGroup while instances shut down: teardown retries until the group goes', { timeout: 60_000 }, async () => {
    const config = awsConfig({ workers: 1 });
    bootInstances(config);
    await provisionCluster(config, { provider: provider(config) });
    const inUse = intercept('DeleteSecurityGroup', 2, ec2Error(400, 'DependencyViolation', (form) => `resource ${form.GroupId} has a dependent object`));

    await teardownCluster(config, { provider: provider(config) });

    expect(inUse.isDone()).toBe(true);
    expect(await groupsOf(config.cluster)).toEqual([]);
    expect(live(await instancesOf(config.cluster))).toEqual([]);
  });

  it('DependencyViolation past the deadline: an error naming the group; a later teardown finishes', { timeout: 60_000 }, async () => {
    const config = awsConfig({ workers: 1, launchTimeoutMs: 3_000 });
    bootInstances(config);
    await provisionCluster(config, { provider: provider(config) });
    const [group] = await groupsOf(config.cluster);
    const [groupName, groupId] = group!.split(' ');
    intercept('DeleteSecurityGroup', 'always', ec2Error(400, 'DependencyViolation', (form) => `resource ${form.GroupId} has a dependent object`));

    const error = await teardownCluster(config, { provider: provider(config) }).catch((e: Error) => e);

    expect(error).toMatchObject({ code: 'SECURITY_GROUP_IN_USE', message: expect.stringContaining(`security group ${groupName} (${groupId}) is still in use after 3000 ms`) });
    expect((error as Error).message).not.toContain('\n');
    expect(await groupsOf(config.cluster)).toEqual([group]);
    nock.cleanAll();
    await teardownCluster(config, { provider: provider(config) });
    expect(await groupsOf(config.cluster)).toEqual([]);
  });

  it('instances that stay pending for a while: provisioning waits for running before it probes a container', { timeout: 60_000 }, async () => {
    const config = awsConfig();
    bootInstances(config);
    const pendingAnswers: number[] = [];
    const pending = intercept('DescribeInstances', 3, async (form, req) => {
      pendingAnswers.push(Date.now());
      return stillPending(form, req);
    }, byInstanceId);
    let firstProgress = 0;

    const report = await provisionCluster(config, { provider: provider(config), onProgress: () => (firstProgress ||= Date.now()) });

    expect(pending.isDone()).toBe(true);
    expect(firstProgress).toBeGreaterThan(pendingAnswers.at(-1)!);
    expect(report.started).toHaveLength(4);
  });

  it('a wait that times out names the instances, their workers and states, and what to do', { timeout: 60_000 }, async () => {
    const config = awsConfig({ launchTimeoutMs: 3_000 });
    intercept('DescribeInstances', 'always', stillPending, byInstanceId);

    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);

    const launched = await instancesOf(config.cluster);
    const named = launched.map((i) => i.split(' ')).map(([worker, id]) => `${worker} ${id} (pending)`);
    expect(error).toMatchObject({ code: 'INSTANCE_WAIT_FAILED', instanceIds: launched.map((i) => i.split(' ')[1]) });
    const message = (error as Error).message;
    expect(message).toBe(
      `instances did not reach running (not within 3 s): ${named.join(', ')}; they are left as they are: ` +
        'run provision again to keep waiting (a terminated one is replaced), or `npm run teardown -- --provider aws` to remove them',
    );
    nock.cleanAll();
    await teardownCluster(config, { provider: provider(config) });
    expect(live(await instancesOf(config.cluster))).toEqual([]);
  });

  it('an instance that terminates while provisioning waits for it: named with its state and reason', { timeout: 60_000 }, async () => {
    const config = awsConfig({ workers: 1 });
    const capacity = '<stateReason><code>Server.InsufficientInstanceCapacity</code><message>Server.InsufficientInstanceCapacity: Insufficient capacity.</message></stateReason>';
    intercept(
      'DescribeInstances',
      'always',
      fromMoto((xml) =>
        xml
          .replace(/<instanceState>.*?<\/instanceState>/, '<instanceState><code>48</code><name>terminated</name></instanceState>')
          .replace(/<stateReason>.*?<\/stateReason>/, capacity),
      ),
      byInstanceId,
    );

    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);

    const [w1] = await instancesOf(config.cluster);
    expect(error).toMatchObject({
      code: 'INSTANCE_WAIT_FAILED',
      message: expect.stringContaining(`: w1 ${w1!.split(' ')[1]} (terminated: Server.InsufficientInstanceCapacity: Insufficient capacity.);`),
    });
  });

  it('a launched instance missing from the next lookup by tag (eventual consistency) is waited for, not the account\'s other instances', { timeout: 60_000 }, async () => {
    // Another instance of the account, already terminated: a waiter given no ids would wait on it.
    const other = await observer.send(new RunInstancesCommand({ ImageId: NEWEST_UBUNTU.ami_id, MinCount: 1, MaxCount: 1 }));
    await observer.send(new TerminateInstancesCommand({ InstanceIds: [other.Instances![0]!.InstanceId!] }));
    const config = awsConfig({ workers: 1 });
    bootInstances(config);
    // The first lookup by tag that would list the launched instance answers without it.
    let hidden = 0;
    const hideOnce = fromMoto((xml) => {
      if (hidden > 0 || !xml.includes('<instanceId>')) return xml;
      hidden++;
      return xml.replace(/<reservationSet>[\s\S]*<\/reservationSet>/, '<reservationSet/>');
    });
    intercept('DescribeInstances', 'always', hideOnce, (form) => !byInstanceId(form));

    const report = await provisionCluster(config, { provider: provider(config) });

    expect(hidden).toBe(1);
    expect(report.started).toEqual(containersOf(config, 'w1'));
  });
});

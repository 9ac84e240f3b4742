import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeInstancesCommand, DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { emptyState } from '../../status/src/schema.js';
import { StateStore } from '../../status/src/state-store.js';
import { NETWORK_GUARD, REPO_ROOT, runEntry, type CliResult } from '../helpers/cli.js';
import { useTempCluster } from '../helpers/cluster.js';
import { MOTO_CREDENTIALS, motoCliEnv, NEWEST_UBUNTU, startMoto, type Moto } from '../helpers/moto.js';

const SSH_CIDR = '203.0.113.7/32';
const ENTRY = 'provisioning/src/main.ts';

describe('the cost guard of provision --provider aws (against moto)', () => {
  const cluster = useTempCluster();
  let moto: Moto;
  let ec2: EC2Client;
  let clusterCount = 0;
  /** Clusters a test may have launched instances for: torn down after it, even when it failed. */
  const launched = new Set<string>();

  beforeAll(async () => {
    moto = await startMoto();
    ec2 = moto.client();
  }, 60_000);
  afterAll(async () => {
    ec2?.destroy();
    await moto?.stop();
  });
  // Registered after useTempCluster's hook, so it runs first, while the state folder still exists.
  afterEach(async () => {
    for (const name of launched) {
      if ((await created(name)).instances.length === 0) continue;
      const result = await teardown(name);
      if (result.code !== 0) throw new Error(`teardown of ${name} failed: ${result.stderr}`);
    }
    launched.clear();
  }, 120_000);

  /** A cluster name of its own for each test: moto's state outlives a test. */
  const newCluster = (): string => `guard${++clusterCount}`;

  /**
   * provision's flags. A short launch timeout: moto's console output has no SSH host keys, so a
   * launched run stops at that step with an error, before anything would reach the instances.
   * The AMI is given: its lookup is tested on its own (aws.test.ts).
   */
  const flags = (name: string, extra: string[] = []): string[] => [
    'provision', '--provider', 'aws', '--cluster', name, '--workers', '2', '--instance-type', 't3.medium', '--ssh-cidr', SSH_CIDR,
    '--ami-id', NEWEST_UBUNTU.ami_id, '--aws-endpoint', moto.endpoint, '--launch-timeout-ms', '1000', ...cluster.cliFlags, ...extra,
  ];

  /** The CLI as a script or CI runs it: no terminal. */
  const provision = (name: string, extra: string[] = []): Promise<CliResult> => runEntry(ENTRY, flags(name, extra), { env: motoCliEnv(MOTO_CREDENTIALS) });

  const teardown = (name: string): Promise<CliResult> =>
    runEntry(ENTRY, ['teardown', '--provider', 'aws', '--cluster', name, '--ssh-cidr', SSH_CIDR, '--aws-endpoint', moto.endpoint, ...cluster.cliFlags], {
      env: motoCliEnv(MOTO_CREDENTIALS),
      timeoutMs: 60_000,
    });

  /**
   * The CLI on a real pseudo-terminal (util-linux `script` gives it one, as a person's shell
   * would): types `keys` once the question shows. Resolves with the exit code and what the
   * terminal showed, without its escape sequences.
   */
  function provisionOnTerminal(name: string, options: { keys?: string; extra?: string[] } = {}): Promise<{ code: number | null; screen: string }> {
    const argv = [process.execPath, '--import', 'tsx', '--import', NETWORK_GUARD, ENTRY, ...flags(name, options.extra)];
    const child = spawn('script', ['-qec', argv.map(shellQuote).join(' '), '/dev/null'], {
      cwd: REPO_ROOT,
      env: motoCliEnv(MOTO_CREDENTIALS),
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let screen = '';
    let keys = options.keys;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      screen += chunk;
      if (keys !== undefined && screen.includes('[y/N]')) {
        child.stdin.write(keys);
        keys = undefined;
      }
    });
    // The terminal's end (SIGHUP) ends the CLI too.
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    return new Promise((resolve) =>
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, screen: screen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '') });
      }),
    );
  }

  /** What moto holds of a cluster: its key pair, its security group, its live instances with their type. */
  async function created(name: string): Promise<{ keyPairs: string[]; groups: string[]; instances: string[] }> {
    const keys = await ec2.send(new DescribeKeyPairsCommand({}));
    const groups = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [`${name}-workers`] }] }));
    const reservations = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${TAGS.cluster}`, Values: [name] },
          { Name: 'instance-state-name', Values: ['pending', 'running'] },
        ],
      }),
    );
    return {
      keyPairs: (keys.KeyPairs ?? []).map((k) => k.KeyName!).filter((key) => key.startsWith(`${name}-`)),
      groups: (groups.SecurityGroups ?? []).map((g) => g.GroupName!),
      instances: (reservations.Reservations ?? [])
        .flatMap((r) => r.Instances ?? [])
        .map((i) => `${i.Tags?.find((t) => t.Key === TAGS.worker)?.Value}: ${i.InstanceType}`)
        .sort(),
    };
  }

  const nothing = { keyPairs: [], groups: [], instances: [] };
  const keyFile = (name: string): Promise<boolean> => access(join(cluster.dir, 'keys', `${name}.pem`)).then(() => true, () => false);

  it('without a terminal and without --yes: refuses with one line and exit 1, creating nothing (not even the key pair or the group)', { timeout: 60_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const result = await provision(name);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: .*\[CONFIRMATION_REQUIRED\]$/)]);
    expect(await created(name)).toEqual(nothing);
    expect(await keyFile(name)).toBe(false);
  });

  it("refuses a state file of another cluster before asking, and --reset deletes it only after the answer", { timeout: 90_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const other = emptyState('someone-else', 'provisioning');
    await new StateStore(cluster.statePath).write(other);
    const refused = await provision(name);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: state file .* belongs to cluster "someone-else", not "guard\d+".* \[CLUSTER_MISMATCH\]$/)]);

    // With --reset the question still comes first: declining leaves the file as it was.
    const declined = await provisionOnTerminal(name, { keys: 'n\r', extra: ['--reset'] });
    expect(declined.screen).toContain('[y/N]');
    expect(declined.code).toBe(1);
    expect((await new StateStore(cluster.statePath).read())?.cluster).toBe('someone-else');
    expect(await created(name)).toEqual(nothing);
  });

  it('on a terminal: shows the instances, their type, the region and the open ports, and answering n creates nothing', { timeout: 90_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const { code, screen } = await provisionOnTerminal(name, { keys: 'n\r' });
    expect(code, screen).toBe(1);
    const lines = screen.split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/us-east-1/));
    expect(lines).toContainEqual(expect.stringMatching(/\bw1\b.*t3\.medium/));
    expect(lines).toContainEqual(expect.stringMatching(/\bw2\b.*t3\.medium/));
    expect(lines).toContainEqual(expect.stringContaining(`tcp 22 from ${SSH_CIDR}`));
    expect(lines).toContainEqual(expect.stringContaining(`tcp ${cluster.basePort}-${cluster.basePort + 9} from ${SSH_CIDR}`));
    expect(lines).toContainEqual(expect.stringMatching(/\[y\/N\] n$/));
    expect(lines.filter((line) => line.startsWith('error: '))).toEqual([expect.stringMatching(/\[NOT_CONFIRMED\]$/)]);
    expect(await created(name)).toEqual(nothing);
    expect(await keyFile(name)).toBe(false);
  });

  it('on a terminal: Ctrl-C at the question creates nothing', { timeout: 90_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const { code, screen } = await provisionOnTerminal(name, { keys: '\x03' });
    expect(code, screen).toBe(1);
    expect(screen.split('\n').filter((line) => line.startsWith('error: '))).toEqual([expect.stringMatching(/\[NOT_CONFIRMED\]$/)]);
    expect(await created(name)).toEqual(nothing);
  });

  it('on a terminal: answering y launches the instances; teardown terminates them', { timeout: 150_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const { code, screen } = await provisionOnTerminal(name, { keys: 'y\r' });
    // Past the question: moto's instances print no SSH host keys, so the run stops there (the launch timeout).
    expect(screen).not.toMatch(/NOT_CONFIRMED|CONFIRMATION_REQUIRED/);
    expect(code, screen).toBe(1);
    expect(await created(name)).toEqual({ keyPairs: [`${name}-workers`], groups: [`${name}-workers`], instances: ['w1: t3.medium', 'w2: t3.medium'] });

    const tornDown = await teardown(name);
    expect(tornDown.code, tornDown.stderr).toBe(0);
    expect(await created(name)).toEqual(nothing);
  });

  it('--yes on a terminal asks nothing; a re-run that launches nothing asks nothing, even without a terminal', { timeout: 150_000 }, async () => {
    const name = newCluster();
    launched.add(name);
    const first = await provisionOnTerminal(name, { extra: ['--yes'] });
    expect(first.screen).not.toContain('[y/N]');
    expect(first.code, first.screen).toBe(1);
    const instances = ['w1: t3.medium', 'w2: t3.medium'];
    expect((await created(name)).instances).toEqual(instances);

    const again = await provision(name);
    expect(again.stderr).not.toMatch(/CONFIRMATION_REQUIRED/);
    expect(again.code, again.stderr).toBe(1);
    expect((await created(name)).instances).toEqual(instances);
  });
});

/** One shell word: `script -c` runs its command through the shell. */
function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

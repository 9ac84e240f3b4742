import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll } from 'vitest';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { byLaunch } from '../../provisioning/src/aws/instances.js';
import { startBackend, type Backend } from './backend.js';
import { startMoto, type Moto, type MotoAmi } from './moto.js';
import { emulatorAddressOnLoopback, routeEmulatorAddresses } from './network-guard.js';

/** The worker an emulator instance runs (its tag); throws when it has none. */
export function workerOf(instance: Instance): string {
  const id = instance.Tags?.find((t) => t.Key === TAGS.worker)?.Value;
  if (!id) throw new Error(`instance ${instance.InstanceId} has no ${TAGS.worker} tag`);
  return id;
}

/** Where a test serves what stands for `instance`: its public address moved onto loopback (see network-guard.ts). */
export function loopbackOf(instance: Instance): string {
  const address = emulatorAddressOnLoopback(instance.PublicIpAddress ?? '');
  if (!address) throw new Error(`instance ${instance.InstanceId} has no public address in the emulator's block: ${instance.PublicIpAddress}`);
  return address;
}

/** The cluster's worker instances that are pending or running, as the emulator describes them now. */
export async function liveWorkers(ec2: EC2Client, cluster: string): Promise<Instance[]> {
  const found = await ec2.send(
    new DescribeInstancesCommand({
      Filters: [
        { Name: `tag:${TAGS.cluster}`, Values: [cluster] },
        { Name: `tag:${TAGS.role}`, Values: ['worker'] },
        { Name: 'instance-state-name', Values: ['pending', 'running'] },
      ],
    }),
  );
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

/** Every instance ever launched for worker `workerId` of the cluster, whatever its state, oldest first. */
export async function instancesOfWorker(ec2: EC2Client, cluster: string, workerId: string): Promise<Instance[]> {
  const found = await ec2.send(
    new DescribeInstancesCommand({
      Filters: [
        { Name: `tag:${TAGS.cluster}`, Values: [cluster] },
        { Name: `tag:${TAGS.worker}`, Values: [workerId] },
      ],
    }),
  );
  // In the order the provider keeps one of two (launch time, then id): launches in the same second tie on time.
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []).sort(byLaunch);
}

/** Stand-ins for the two model containers user-data starts on `instance`: answering /health as `<worker>-<port>` on its loopback address. */
export async function serveModelContainers(instance: Instance, ports: readonly number[]): Promise<Backend[]> {
  const host = loopbackOf(instance);
  return Promise.all(ports.map((port) => startBackend(`${workerOf(instance)}-${port}`, { host, port })));
}

export interface InstanceWatch {
  /** Stop watching, wait for boots under way; rethrows the first failure of a poll or a boot. */
  stop(): Promise<void>;
}

/**
 * Plays what happens on an instance once EC2 started it (cloud-init, then its containers): polls
 * the emulator every `intervalMs` for the cluster's worker instances and runs `boot` once for each
 * new one, while provisioning (in this process or a CLI's) waits for them.
 */
export function watchInstances(ec2: EC2Client, cluster: string, boot: (instance: Instance) => Promise<void>, options: { intervalMs?: number } = {}): InstanceWatch {
  const seen = new Set<string>();
  const boots: Promise<void>[] = [];
  let failure: unknown;
  let running = true;
  const loop = (async () => {
    while (running && failure === undefined) {
      try {
        for (const instance of await liveWorkers(ec2, cluster)) {
          if (seen.has(instance.InstanceId!)) continue;
          seen.add(instance.InstanceId!);
          boots.push(boot(instance).catch((error: unknown) => void (failure ??= error)));
        }
      } catch (error) {
        failure ??= error;
      }
      await sleep(options.intervalMs ?? 100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await Promise.all(boots);
      if (failure !== undefined) throw failure;
    },
  };
}

/** One emulator for a test file, its instances' addresses routed to loopback, and a folder for their host keys. */
export interface MotoSuite {
  readonly moto: Moto;
  readonly ec2: EC2Client;
  /** Where a test writes the SSH host keys its instances' consoles show; removed after the file. */
  readonly keysDir: string;
}

/**
 * Start moto once for the test file (it takes seconds; each test works on a cluster name of its
 * own), route the addresses it invents for its instances (54.214.A.B) to 127.214.A.B, and undo
 * both after the file, even when it failed.
 */
export function useMotoSuite(options: { amis?: readonly MotoAmi[] } = {}): MotoSuite {
  let moto: Moto | undefined;
  let ec2: EC2Client | undefined;
  let keysDir: string | undefined;
  let undoRoute: (() => void) | undefined;
  beforeAll(async () => {
    moto = await startMoto(options);
    ec2 = moto.client();
    keysDir = await mkdtemp(join(tmpdir(), 'moto-host-keys-'));
    undoRoute = routeEmulatorAddresses();
  }, 60_000);
  afterAll(async () => {
    undoRoute?.();
    await moto?.stop();
    if (keysDir) await rm(keysDir, { recursive: true, force: true });
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useMotoSuite: the emulator runs only inside the file\'s tests');
    return value;
  };
  return {
    get moto() {
      return ready(moto);
    },
    get ec2() {
      return ready(ec2);
    },
    get keysDir() {
      return ready(keysDir);
    },
  };
}

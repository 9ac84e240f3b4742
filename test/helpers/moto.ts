import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EC2Client } from '@aws-sdk/client-ec2';
import { freeBasePort } from '../../common/src/free-ports.js';
import { cleanEnv } from './orchestrator-process.js';
import { pidAlive } from './processes.js';
import { pollWithin } from '../../common/src/poll-until.js';

/** Canonical's AWS account, which publishes the Ubuntu images. */
export const CANONICAL = '099720109477';

/** One image of the catalog moto serves (`MOTO_AMIS_PATH`). */
export interface MotoAmi {
  ami_id: string;
  name: string;
  owner_id: string;
  architecture: 'x86_64' | 'arm64';
  creation_date: string;
  state: 'available' | 'pending';
  public: boolean;
  root_device_type: 'ebs';
  root_device_name: string;
  virtualization_type: 'hvm';
  hypervisor: 'xen';
  image_type: 'machine';
  description: string;
}

function ami(id: string, name: string, created: string, overrides: Partial<MotoAmi> = {}): MotoAmi {
  return {
    ami_id: id,
    name,
    owner_id: CANONICAL,
    architecture: 'x86_64',
    creation_date: created,
    state: 'available',
    public: true,
    root_device_type: 'ebs',
    root_device_name: '/dev/sda1',
    virtualization_type: 'hvm',
    hypervisor: 'xen',
    image_type: 'machine',
    description: 'Canonical, Ubuntu, 24.04, amd64 noble image',
    ...overrides,
  };
}

/**
 * Ubuntu 24.04 server images named and owned as Canonical publishes them, and decoys that a
 * careless lookup would pick: a newer copy under another owner, newer arm64 and minimal images,
 * an image still pending, and older releases.
 */
export const UBUNTU_CATALOG: readonly MotoAmi[] = [
  ami('ami-0a1b2c3d4e5f60001', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260318', '2026-03-18T10:12:44.000Z'),
  ami('ami-0a1b2c3d4e5f60002', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261015', '2026-10-15T09:30:02.000Z'),
  ami('ami-0a1b2c3d4e5f60003', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260702', '2026-07-02T14:05:19.000Z'),
  ami('ami-0d0d0d0d0d0d00001', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261120', '2026-11-20T08:00:00.000Z', { owner_id: '123456789012', description: 'a copy under another account' }),
  ami('ami-0d0d0d0d0d0d00002', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20261118', '2026-11-18T08:00:00.000Z', { architecture: 'arm64' }),
  ami('ami-0d0d0d0d0d0d00003', 'ubuntu-minimal/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-minimal-20261119', '2026-11-19T08:00:00.000Z'),
  ami('ami-0d0d0d0d0d0d00004', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261125', '2026-11-25T08:00:00.000Z', { state: 'pending' }),
  ami('ami-0d0d0d0d0d0d00005', 'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20261121', '2026-11-21T08:00:00.000Z'),
  ami('ami-0d0d0d0d0d0d00006', 'ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20250101', '2025-01-01T08:00:00.000Z'),
];

/** The image provisioning must choose from UBUNTU_CATALOG: the newest available Canonical amd64 24.04 server image. */
export const NEWEST_UBUNTU = UBUNTU_CATALOG[1]!;

/** Fake credentials: moto accepts any; real AWS would refuse them. */
export const MOTO_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'AKIDMOTOTEST', AWS_SECRET_ACCESS_KEY: 'moto-test-secret', AWS_REGION: 'us-east-1' } as const;

export interface Moto {
  /** `http://127.0.0.1:PORT`, for `--aws-endpoint` and SDK clients. */
  endpoint: string;
  pid: number;
  /** An SDK client with fake credentials talking to this emulator. */
  client(options?: { maxAttempts?: number }): EC2Client;
  /** SIGTERM by PID (SIGKILL if it lingers) and the catalog file removed; idempotent. */
  stop(): Promise<void>;
}

/**
 * moto's EC2 on 127.0.0.1, on a free port, with `amis` as its image catalog. Started as
 * `python3 -m moto.server` so that the PID is the server's own (the `moto_server` shim forks).
 */
export async function startMoto(options: { amis?: readonly MotoAmi[] } = {}): Promise<Moto> {
  const dir = await mkdtemp(join(tmpdir(), 'moto-'));
  const catalog = join(dir, 'amis.json');
  await writeFile(catalog, JSON.stringify(options.amis ?? UBUNTU_CATALOG));
  for (let attempt = 0; ; attempt++) {
    const port = await freeBasePort([0]);
    const child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, MOTO_AMIS_PATH: catalog, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (log = (log + chunk).slice(-20_000)));
    const endpoint = `http://127.0.0.1:${port}`;
    const stop = stopper(child, dir);
    if (await answering(child, endpoint)) {
      return {
        endpoint,
        pid: child.pid!,
        client: (clientOptions = {}) =>
          new EC2Client({
            region: MOTO_CREDENTIALS.AWS_REGION,
            endpoint,
            credentials: { accessKeyId: MOTO_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: MOTO_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
            maxAttempts: clientOptions.maxAttempts ?? 4,
          }),
        stop,
      };
    }
    await stop();
    if (attempt >= 3) throw new Error(`moto did not start:\n${log}`);
  }
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  let stopping: Promise<void> | null = null;
  return () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const gone = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
        if (!gone && pidAlive(child.pid!)) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      await rm(dir, { recursive: true, force: true });
    })());
}

async function answering(child: ChildProcess, endpoint: string): Promise<boolean> {
  const up = await pollWithin(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      const answers = await fetch(`${endpoint}/moto-api/`).then(
        (res) => res.ok,
        () => false,
      );
      return answers ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return up ?? false;
}

/**
 * The environment of a CLI run against moto: `env` over the machine's cleanEnv without any AWS_*
 * variable, never a shared profile or the instance metadata service, and the SDK's Node version
 * notice silenced.
 */
export function motoCliEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const machine = Object.fromEntries(Object.entries(cleanEnv).filter(([key]) => !key.startsWith('AWS_')));
  return {
    ...machine,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    ...env,
  };
}

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetConsoleOutputCommand, type Instance } from '@aws-sdk/client-ec2';
import { pollUntil } from '../../../common/src/poll-until.js';
import { knownHostName } from '../../../runtime/src/known-hosts.js';
import type { WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { AbortedError } from '../errors.js';
import { WorkersUnhealthyError } from './aws-errors.js';
import { awsCall, keysDir, type Ec2Context } from './ec2-context.js';

/** The cluster's known_hosts file, next to its key. */
export function knownHostsPath(config: ProvisionConfig): string {
  return join(keysDir(config), `${config.cluster}.known_hosts`);
}

/**
 * cloud-init prints each instance's SSH host keys on its console: read them into the known_hosts
 * file, so the orchestrator's SSH connections are verified from the first one. All within one
 * launchTimeoutMs.
 */
export async function writeKnownHosts(ctx: Ec2Context, workers: WorkerRecord[], instances: Map<string, Instance>, signal?: AbortSignal): Promise<void> {
  const hosts: HostKeys[] = [];
  const deadline = Date.now() + ctx.config.launchTimeoutMs;
  for (const worker of workers) {
    const keys = await consoleHostKeys(ctx, instances.get(worker.id)!.InstanceId!, `worker ${worker.id}`, Math.max(0, deadline - Date.now()), signal);
    hosts.push({ host: worker.host, keys });
  }
  await setKnownHosts(ctx.config, hosts);
}

/** One host's SSH host keys (`ssh-ed25519 AAAA...`). */
export interface HostKeys {
  host: string;
  keys: string[];
}

/**
 * Put these hosts' keys in the cluster's known_hosts in place of any earlier lines of the same
 * hosts (EC2 reuses addresses, and an old key there would refuse the new machine), keeping every
 * other line: workers come and go one at a time.
 */
export function setKnownHosts(config: ProvisionConfig, hosts: HostKeys[]): Promise<void> {
  return editKnownHosts(config, hosts.map((h) => h.host), hosts.flatMap((h) => h.keys.map((key) => `${knownHostName(h.host, config.sshPort)} ${key}`)));
}

/** Remove these hosts' lines from the cluster's known_hosts (their instances are gone). */
export function forgetKnownHosts(config: ProvisionConfig, hosts: string[]): Promise<void> {
  return editKnownHosts(config, hosts, []);
}

/** Edits of one known_hosts file in this process, in turn: each reads what the one before wrote. */
const edits = new Map<string, Promise<void>>();

/**
 * The file without the lines of `hosts`, plus `added`. Written to a temporary file then renamed,
 * so an SSH connection opening meanwhile reads the whole old file or the whole new one.
 */
function editKnownHosts(config: ProvisionConfig, hosts: string[], added: string[]): Promise<void> {
  const path = knownHostsPath(config);
  const names = new Set(hosts.map((host) => knownHostName(host, config.sshPort)));
  const edit = async (): Promise<void> => {
    const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return '';
      throw error;
    });
    const kept = text.split('\n').filter((line) => line.trim() !== '' && !names.has(line.split(/\s+/)[0]!));
    const lines = [...kept, ...added];
    await mkdir(keysDir(config), { recursive: true, mode: 0o700 });
    const temporary = `${path}.${process.pid}.tmp`;
    await writeFile(temporary, lines.length > 0 ? `${lines.join('\n')}\n` : '', { mode: 0o644 });
    await rename(temporary, path);
  };
  const done = (edits.get(path) ?? Promise.resolve()).then(edit, edit);
  edits.set(path, done);
  return done;
}

/** The host keys an instance's cloud-init printed on its console, once there (within `timeoutMs`); `what` names it in the error. */
export async function consoleHostKeys(ctx: Ec2Context, instanceId: string, what: string, timeoutMs: number, signal?: AbortSignal): Promise<string[]> {
  return pollUntil(
    async () => {
      const output = await awsCall('GetConsoleOutput', () => ctx.ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true })));
      const keys = hostKeysOf(Buffer.from(output.Output ?? '', 'base64').toString('utf8'));
      return keys.length > 0 ? keys : undefined;
    },
    {
      timeoutMs,
      intervalMs: ctx.pollMs,
      signal,
      onTimeout: () => new WorkersUnhealthyError(`${what} (${instanceId}) printed no SSH host keys on its console (set sshHostKeyCheck false only if you accept unverified SSH)`),
    },
  ).catch((error: unknown) => {
    throw signal?.aborted ? new AbortedError() : error;
  });
}

/** `ssh-ed25519 AAAA...` lines of cloud-init's host key block in a console output. */
export function hostKeysOf(console: string): string[] {
  const block = /-----BEGIN SSH HOST KEY KEYS-----\r?\n([\s\S]*?)-----END SSH HOST KEY KEYS-----/.exec(console)?.[1] ?? '';
  return block
    .split(/\r?\n/)
    .map((line) => line.trim().split(/\s+/).slice(0, 2))
    .filter(([type, key]) => key !== undefined && (type!.startsWith('ssh-') || type!.startsWith('ecdsa-')))
    .map(([type, key]) => `${type} ${key}`);
}

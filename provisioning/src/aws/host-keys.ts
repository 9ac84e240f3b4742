import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetConsoleOutputCommand, type Instance } from '@aws-sdk/client-ec2';
import { pollUntil } from '../../../common/src/poll-until.js';
import { knownHostName } from '../../../runtime/src/known-hosts.js';
import type { WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { WorkersUnhealthyError } from './aws-errors.js';
import { awsCall, keysDir, type Ec2Context } from './ec2-context.js';

/** The cluster's known_hosts file, next to its key. */
export function knownHostsPath(config: ProvisionConfig): string {
  return join(keysDir(config), `${config.cluster}.known_hosts`);
}

/**
 * cloud-init prints each instance's SSH host keys on its console: read them into a known_hosts
 * file, so the orchestrator's SSH connections are verified from the first one. All within one
 * launchTimeoutMs.
 */
export async function writeKnownHosts(ctx: Ec2Context, workers: WorkerRecord[], instances: Map<string, Instance>): Promise<void> {
  const lines: string[] = [];
  const deadline = Date.now() + ctx.config.launchTimeoutMs;
  for (const worker of workers) {
    const keys = await consoleHostKeys(ctx, instances.get(worker.id)!.InstanceId!, `worker ${worker.id}`, Math.max(0, deadline - Date.now()));
    lines.push(...keys.map((key) => `${knownHostName(worker.host, ctx.config.sshPort)} ${key}`));
  }
  await mkdir(keysDir(ctx.config), { recursive: true, mode: 0o700 });
  await writeFile(knownHostsPath(ctx.config), `${lines.join('\n')}\n`, { mode: 0o644 });
}

/** The host keys an instance's cloud-init printed on its console, once there (within `timeoutMs`); `what` names it in the error. */
export async function consoleHostKeys(ctx: Ec2Context, instanceId: string, what: string, timeoutMs: number): Promise<string[]> {
  return pollUntil(
    async () => {
      const output = await awsCall('GetConsoleOutput', () => ctx.ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true })));
      const keys = hostKeysOf(Buffer.from(output.Output ?? '', 'base64').toString('utf8'));
      return keys.length > 0 ? keys : undefined;
    },
    {
      timeoutMs,
      intervalMs: ctx.pollMs,
      onTimeout: () => new WorkersUnhealthyError(`${what} (${instanceId}) printed no SSH host keys on its console (set sshHostKeyCheck false only if you accept unverified SSH)`),
    },
  );
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

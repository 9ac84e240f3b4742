import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { REPO_ROOT } from './cli.js';
import { pidAlive } from './processes.js';
import { freeBasePort } from '../../common/src/free-ports.js';
import { pollWithin } from '../../common/src/poll-until.js';

const execFileAsync = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

/** Installs openssh-server from apt when sshd is missing (a fresh CI machine); a no-op otherwise. Needs root. */
export async function ensureSshd(): Promise<void> {
  if (existsSync(SSHD)) return;
  await execFileAsync('bash', [join(REPO_ROOT, 'scripts/apt-install.sh'), 'openssh-server'], { timeout: 600_000 });
}

/** A new ed25519 key pair without passphrase at `path` and `path.pub`; resolves with the public key line (no comment). */
export async function generateKey(path: string): Promise<string> {
  await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', path]);
  return publicKeyLine(`${path}.pub`);
}

/** `type base64` of a .pub file. */
export async function publicKeyLine(pubPath: string): Promise<string> {
  const [type, key] = (await readFile(pubPath, 'utf8')).trim().split(/\s+/);
  return `${type} ${key}`;
}

export interface Sshd {
  port: number;
  pid: number;
  /** What sshd wrote to stderr (-e), for failure messages. */
  log(): string;
  /** SIGTERM by pid, SIGKILL if it lingers; idempotent. */
  stop(): Promise<void>;
}

/**
 * A foreground sshd on 127.0.0.1 with our host key and authorized_keys file, and no system config
 * (`-f /dev/null`: defaults, so root may log in with a key only).
 */
export async function startSshd(options: { hostKeyPath: string; authorizedKeysPath: string; listenAddress?: string; port?: number }): Promise<Sshd> {
  // Privilege separation needs this directory; it is not there until the service ran once.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  for (let attempt = 0; ; attempt++) {
    // A given port (a machine coming back where it was) is tried once; otherwise a free one.
    const port = options.port ?? (await freeBasePort([0]));
    const child = spawn(
      SSHD,
      [
        '-D',
        '-e',
        '-f', '/dev/null',
        '-p', String(port),
        '-o', `ListenAddress=${options.listenAddress ?? '127.0.0.1'}`,
        '-h', options.hostKeyPath,
        '-o', `AuthorizedKeysFile=${options.authorizedKeysPath}`,
        '-o', 'StrictModes=no',
        '-o', 'PidFile=none',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-20_000);
    });
    const sshd = handle(child, port, () => stderr);
    if (await listening(child, sshd.log, options.listenAddress ?? '127.0.0.1')) return sshd;
    await sshd.stop();
    // Someone took the port between the check and the bind: try another one.
    if (attempt >= 4 || options.port !== undefined) throw new Error(`sshd did not start:\n${stderr}`);
  }
}

function handle(child: ChildProcess, port: number, log: () => string): Sshd {
  let stopping: Promise<void> | null = null;
  return {
    port,
    pid: child.pid!,
    log,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const gone = await Promise.race([exited.then(() => true), sleep(3_000).then(() => false)]);
        if (!gone && pidAlive(child.pid!)) {
          child.kill('SIGKILL');
          await exited;
        }
      })();
      return stopping;
    },
  };
}

/** Waits for sshd to say it listens (it binds before that line); false when it exited first or took over 10 s. */
async function listening(child: ChildProcess, log: () => string, address: string): Promise<boolean> {
  const seen = await pollWithin(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      return log().includes(`Server listening on ${address}`) ? true : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  return seen ?? false;
}

/** A known_hosts line for the sshd: `[127.0.0.1]:port type key`. */
export function knownHostsLine(port: number, publicKey: string): string {
  return `[127.0.0.1]:${port} ${publicKey}`;
}

/** Hashes every host name of a known_hosts file in place, as HashKnownHosts would have written them. */
export async function hashKnownHosts(path: string): Promise<void> {
  await execFileAsync('ssh-keygen', ['-H', '-f', path]);
}

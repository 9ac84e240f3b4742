import { homedir } from 'node:os';
import { join } from 'node:path';
// ssh2 is CommonJS whose named exports Node cannot detect: take them from the default export.
import ssh2, { type ConnectConfig } from 'ssh2';
import { ConfigError } from '../../common/src/errors.js';
import { HostKeyMismatchError, HostKeyUnknownError } from './errors.js';
import { checkHostKey, fingerprint, preferredHostKeyAlgorithms, readKnownHosts, type HostKeyVerdict } from './known-hosts.js';

/** How to reach a Docker engine over SSH (the far side runs `docker system dial-stdio`). */
export interface SshTarget {
  host: string;
  /** @default 22 */
  port?: number;
  username: string;
  /** OpenSSH or PEM private key (not its path). Never logged nor put in error messages. */
  privateKey: string | Buffer;
  /** Host keys we trust. @default ~/.ssh/known_hosts */
  knownHostsPath?: string;
  /** Accept any host key: only for throwaway machines whose key cannot be known in advance. @default false */
  insecureSkipHostKeyCheck?: boolean;
}

/** ssh2's own default host-key algorithms, in its order (Node 20 supports all of them). */
const HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const;

/** `user@host:port`, for messages. */
export function sshTargetName(target: SshTarget): string {
  return `ssh://${target.username}@${target.host}:${target.port ?? 22}`;
}

/** Throws a ConfigError (naming the key, never showing it) when ssh2 cannot use the private key. */
export function assertUsablePrivateKey(privateKey: string | Buffer): void {
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error) {
    throw new ConfigError(`connection.ssh.privateKey: expected an unencrypted OpenSSH or PEM private key, received one ssh2 cannot use (${parsed.message})`);
  }
}

/**
 * Checks every SSH connection's host key against known_hosts (read again for each connection, so an
 * edited file takes effect at once), and remembers why it refused one: ssh2 only reports "Host denied".
 */
export class HostKeyVerifier {
  readonly knownHostsPath: string;
  readonly #target: SshTarget;
  #lastRefusal: { verdict: Exclude<HostKeyVerdict, 'trusted'>; fingerprint: string } | null = null;

  constructor(target: SshTarget) {
    this.#target = target;
    this.knownHostsPath = target.knownHostsPath ?? join(homedir(), '.ssh', 'known_hosts');
  }

  /** ssh2's asynchronous `hostVerifier(key, verify)`. */
  readonly verify = (key: Buffer, verify: (permitted: boolean) => void): void => {
    readKnownHosts(this.knownHostsPath).then(
      (entries) => {
        const verdict = checkHostKey(entries, this.#target.host, this.#target.port ?? 22, key);
        this.#lastRefusal = verdict === 'trusted' ? null : { verdict, fingerprint: fingerprint(key) };
        verify(verdict === 'trusted');
      },
      () => {
        // An unreadable file trusts nothing.
        this.#lastRefusal = { verdict: 'unknown', fingerprint: fingerprint(key) };
        verify(false);
      },
    );
  };

  /** The typed error for ssh2's "Host denied" error, from the last refusal. */
  refusalError(cause: unknown): HostKeyUnknownError | HostKeyMismatchError {
    const refusal = this.#lastRefusal ?? { verdict: 'unknown', fingerprint: 'unknown' };
    const ErrorClass = refusal.verdict === 'mismatch' ? HostKeyMismatchError : HostKeyUnknownError;
    return new ErrorClass(sshTargetName(this.#target), this.knownHostsPath, refusal.fingerprint, cause);
  }

  /** Host-key algorithms with those known_hosts lists for the target first, so the server shows a key we can check. */
  async algorithms(): Promise<string[]> {
    const entries = await readKnownHosts(this.knownHostsPath).catch(() => []);
    return preferredHostKeyAlgorithms(entries, this.#target.host, this.#target.port ?? 22, HOST_KEY_ALGORITHMS);
  }
}

/** ssh2 options for dockerode's `sshOptions`: key auth only (no agent, no password), host key checked unless opted out. */
export async function sshOptions(target: SshTarget, verifier: HostKeyVerifier | null): Promise<ConnectConfig> {
  const options: ConnectConfig = { privateKey: target.privateKey };
  if (verifier) {
    options.hostVerifier = verifier.verify;
    options.algorithms = { serverHostKey: (await verifier.algorithms()) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] };
  }
  return options;
}

/** Whether an error is ssh2 refusing the host key (our verifier said no). */
export function isHostDenied(error: unknown): boolean {
  return (error as { level?: unknown })?.level === 'handshake' && /Host denied/.test((error as Error).message);
}

/** Whether an error is ssh2 running out of authentication methods. */
export function isAuthFailure(error: unknown): boolean {
  return (error as { level?: unknown })?.level === 'client-authentication';
}

import { get } from 'node:http';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import type { Duplex, Readable } from 'node:stream';
import ssh2, { type Client } from 'ssh2';
import { EngineUnreachableError, SshAuthError } from '../../../runtime/src/errors.js';
import { HostKeyVerifier, isAuthFailure, isHostDenied, sshOptions, sshTargetName, type SshTarget } from '../../../runtime/src/ssh-connection.js';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An SSH session to `target`, host key checked like the Docker driver does unless the target opts out; the caller ends it. */
async function connect(target: SshTarget): Promise<Client> {
  const verifier = target.insecureSkipHostKeyCheck ? null : new HostKeyVerifier(target);
  const options = await sshOptions(target, verifier);
  const client = new ssh2.Client();
  return new Promise<Client>((resolve, reject) => {
    client.once('error', (error) => {
      client.end();
      if (verifier && isHostDenied(error)) reject(verifier.refusalError(error));
      else if (isAuthFailure(error)) reject(new SshAuthError(sshTargetName(target), error));
      else reject(new EngineUnreachableError(sshTargetName(target), error));
    });
    client.once('ready', () => resolve(client));
    client.connect({ ...options, host: target.host, port: target.port ?? 22, username: target.username, readyTimeout: 20_000 });
  });
}

/** Run one command over SSH, feeding `stdin` to it when given. Resolves with its exit code and output (the last 64 kB). */
export async function sshExec(target: SshTarget, command: string, stdin?: Readable): Promise<ExecResult> {
  const client = await connect(target);
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      client.exec(command, (error, channel) => {
        if (error) return reject(error);
        let stdout = '';
        let stderr = '';
        channel.on('data', (chunk: Buffer) => (stdout = (stdout + chunk.toString('utf8')).slice(-65_536)));
        channel.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-65_536)));
        channel.once('close', (code: number | null) => resolve({ code: code ?? null, stdout, stderr }));
        if (stdin) {
          stdin.once('error', () => channel.destroy());
          stdin.pipe(channel);
        } else {
          channel.end();
        }
      });
    });
  } finally {
    client.end();
  }
}

/**
 * `GET path` of 127.0.0.1:port as seen from the SSH server (a tunnel: only SSH needs to be open).
 * With `tls`, over TLS, resolving with the certificate served too: the SSH channel already
 * authenticates the far end, and the certificate names what clients call it, not 127.0.0.1, so
 * the caller compares it with the one it expects instead of verifying it.
 */
export async function sshHttpGet(
  target: SshTarget,
  port: number,
  path: string,
  timeoutMs: number,
  options: { tls?: boolean } = {},
): Promise<{ status: number; body: string; certificate?: Buffer }> {
  const client = await connect(target);
  try {
    const channel = await new Promise<Duplex>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (error, stream) => (error ? reject(error) : resolve(stream))),
    );
    const socket = (): Duplex => (options.tls ? tlsConnect({ socket: channel, rejectUnauthorized: false }) : channel);
    return await new Promise((resolve, reject) => {
      // No `agent`: with one (even `agent: false`) Node ignores createConnection and connects to 127.0.0.1 here, not through the tunnel.
      const req = get({ host: '127.0.0.1', port, path, createConnection: socket as never, timeout: timeoutMs }, (res) => {
        const certificate = res.socket instanceof TLSSocket ? res.socket.getPeerCertificate().raw : undefined;
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body, ...(certificate ? { certificate } : {}) }));
        res.once('error', reject);
      });
      req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.once('error', reject);
    });
  } finally {
    client.end();
  }
}

import { get } from 'node:http';
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

/** `GET path` of 127.0.0.1:port as seen from the SSH server (a tunnel: only SSH needs to be open). */
export async function sshHttpGet(target: SshTarget, port: number, path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  const client = await connect(target);
  try {
    const channel = await new Promise<Duplex>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (error, stream) => (error ? reject(error) : resolve(stream))),
    );
    return await new Promise((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port, path, agent: false, createConnection: () => channel as never, timeout: timeoutMs }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.once('error', reject);
      });
      req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.once('error', reject);
    });
  } finally {
    client.end();
  }
}

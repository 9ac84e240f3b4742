import type { Readable } from 'node:stream';
import ssh2 from 'ssh2';
import { EngineUnreachableError, SshAuthError } from '../../../runtime/src/errors.js';
import { HostKeyVerifier, isAuthFailure, isHostDenied, sshOptions, sshTargetName, type SshTarget } from '../../../runtime/src/ssh-connection.js';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run one command over SSH (host key checked like the Docker driver does, unless the target opts
 * out), feeding `stdin` to it when given. Resolves with its exit code and output (the last 64 kB).
 */
export async function sshExec(target: SshTarget, command: string, stdin?: Readable): Promise<ExecResult> {
  const verifier = target.insecureSkipHostKeyCheck ? null : new HostKeyVerifier(target);
  const options = await sshOptions(target, verifier);
  const client = new ssh2.Client();
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      client.once('error', (error) => {
        if (verifier && isHostDenied(error)) reject(verifier.refusalError(error));
        else if (isAuthFailure(error)) reject(new SshAuthError(sshTargetName(target), error));
        else reject(new EngineUnreachableError(sshTargetName(target), error));
      });
      client.once('ready', () => {
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
      client.connect({ ...options, host: target.host, port: target.port ?? 22, username: target.username, readyTimeout: 20_000 });
    });
  } finally {
    client.end();
  }
}

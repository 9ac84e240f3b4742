import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, type CliResult } from '../helpers/cli.js';

export { run };

/** Run a command that must succeed; the error carries its stderr. */
export async function runOk(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const result = await run(file, args, options);
  if (result.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
  return result;
}

/** A name unique to this test run, for images, containers and compose projects. */
export const uniqueName = (prefix: string): string => `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;

/** Build the worker image under `tag` with the project's script, never trying a registry. */
export function buildWorkerImage(tag: string): Promise<CliResult> {
  return runOk('bash', ['scripts/build-worker-image.sh'], { env: { ...process.env, WORKER_IMAGE: tag, PULL_BASE: '0' }, timeoutMs: 300_000 });
}

/** `docker inspect` of one container or image. */
export async function inspect(...args: string[]): Promise<any> {
  const { stdout } = await runOk('docker', ['inspect', ...args]);
  return JSON.parse(stdout)[0];
}

/** Remove containers by id or name and then image tags, ignoring the ones already gone. */
export async function removeDockerObjects(containers: string[], images: string[] = []): Promise<void> {
  if (containers.length > 0) await run('docker', ['rm', '-f', ...containers]);
  for (const image of images) await run('docker', ['rmi', image]);
}

/** Poll `check` until it returns a value other than undefined; fail after `timeoutMs` naming `what`. */
export async function poll<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    await sleep(200);
  }
}

/** GET `url` as JSON once it answers 200. */
export function healthOf(url: string, timeoutMs = 30_000): Promise<any> {
  return poll(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return response.ok ? response.json() : undefined;
  }, `200 from ${url}`, timeoutMs);
}

import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { request } from 'undici';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS, type ContainerSpec } from '../../runtime/src/driver.js';
import { REPO_ROOT, run, type CliResult } from './cli.js';
import { pollUntil } from '../../common/src/poll-until.js';

const execFileAsync = promisify(execFile);

/** The registry-free base image of scripts/node-base-image.sh: node only, no shell. */
export const NODE_BASE_IMAGE = 'local/node-base:20';

/**
 * A tiny /health server on $HOST:$PORT, exiting at once on SIGTERM (as PID 1, node would otherwise
 * ignore it and `docker stop` would wait for the kill).
 */
export const HEALTH_SERVER_COMMAND = [
  'node',
  '-e',
  [
    "process.on('SIGTERM', () => process.exit(0));",
    "require('http').createServer((req, res) => {",
    "  res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' });",
    "  res.end(JSON.stringify({ status: 'ok', id: process.env.CONTAINER_ID }));",
    '}).listen(Number(process.env.PORT), process.env.HOST);',
  ].join('\n'),
];

/** Generous: on a fresh machine the engine script installs Docker from apt first. */
export const ENGINE_SETUP_TIMEOUT_MS = 600_000;

/**
 * Installs and starts the engine and builds the base image when missing (a fresh CI machine has neither).
 * Test files call this in parallel; the scripts serialize themselves.
 */
export async function ensureDockerEngine(): Promise<void> {
  const options = { cwd: REPO_ROOT, timeout: ENGINE_SETUP_TIMEOUT_MS };
  await execFileAsync('bash', ['scripts/docker-engine.sh'], options);
  await execFileAsync('bash', ['scripts/node-base-image.sh', NODE_BASE_IMAGE], options);
}

/** Labels unique to one test run: everything a suite creates carries them, and cleanup touches nothing else. */
export function runLabels(suite: string): Record<string, string> {
  return { [LABELS.cluster]: `${suite}-${randomUUID()}` };
}

/** A spec for the health server on 127.0.0.1:port. */
export function healthSpec(name: string, port: number, labels: Record<string, string>): ContainerSpec {
  return { name, host: '127.0.0.1', port, env: {}, labels: { ...labels }, image: NODE_BASE_IMAGE, command: HEALTH_SERVER_COMMAND };
}

/** Force-removes every container carrying these labels. */
export async function removeLabelled(driver: DockerDriver, labels: Record<string, string>): Promise<void> {
  // No labels would match every container on the engine.
  if (Object.keys(labels).length === 0) throw new Error('removeLabelled needs at least one label');
  const containers = await driver.list(labels);
  await Promise.all(containers.map((container) => driver.remove(container.runtimeId)));
}

/** GET /health until it answers (the app needs a moment after the container started). */
export function health(port: number, timeoutMs = 10_000): Promise<{ status: number; body: unknown }> {
  return poll(
    async () => {
      const res = await request(`http://127.0.0.1:${port}/health`, { reset: true, headersTimeout: 1_000, bodyTimeout: 1_000 });
      return { status: res.statusCode, body: await res.body.json() };
    },
    `/health on port ${port}`,
    timeoutMs,
    50,
  );
}

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
  return runOk('bash', ['scripts/build-image.sh'], { env: { ...process.env, WORKER_IMAGE: tag, PULL_BASE: '0' }, timeoutMs: 300_000 });
}

/**
 * Build examples/flask-model under `tag` with the project's script, never trying a registry: on the
 * Debian-package base, made once per machine by scripts/python-base-image.sh (about 3 minutes, the
 * reason for the 10-minute bound); Docker's layer cache then makes later builds take seconds.
 */
export function buildFlaskModelImage(tag: string): Promise<CliResult> {
  return runOk('bash', ['scripts/build-image.sh', 'flask-model'], { env: { ...process.env, FLASK_MODEL_IMAGE: tag, PULL_BASE: '0' }, timeoutMs: 600_000 });
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
export function poll<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  let lastError: unknown;
  return pollUntil(
    async () => {
      try {
        return await check();
      } catch (error) {
        lastError = error;
        return undefined;
      }
    },
    { timeoutMs, intervalMs, onTimeout: () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError }) },
  );
}

/** GET `url` as JSON once it answers 200. */
export function healthOf(url: string, timeoutMs = 30_000): Promise<any> {
  return poll(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return response.ok ? response.json() : undefined;
  }, `200 from ${url}`, timeoutMs);
}

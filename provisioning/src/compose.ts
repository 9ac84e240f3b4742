import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { AppError } from '../../common/src/errors.js';
import { REPO_ROOT } from '../../common/src/paths.js';
import { MODEL_HOST_ENV, pickEnv, type ContainerResources } from '../../runtime/src/driver.js';
import { GPU_REFUSAL, GpuUnavailableError } from '../../runtime/src/errors.js';

/** The compose file every Docker worker runs: the same one EC2 user-data uses. */
export const WORKER_COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.worker.yml');

/** Override reserving GPUs for both model containers, added to WORKER_COMPOSE_FILE when a template asks for GPUs. */
export const GPU_COMPOSE_FILE = join(REPO_ROOT, 'worker/docker-compose.gpu.yml');

/** The compose variables that apply a template's resources; a limit not set is left to the file's default (none). */
export function resourceVariables(resources: ContainerResources | undefined): Record<string, string> {
  return {
    ...(resources?.cpus !== undefined ? { MODEL_CPUS: String(resources.cpus) } : {}),
    // Compose's `m` is MiB, as the Docker CLI's.
    ...(resources?.memoryMb !== undefined ? { MODEL_MEMORY: `${resources.memoryMb}m` } : {}),
    ...(resources?.gpus !== undefined ? { MODEL_GPUS: String(resources.gpus) } : {}),
  };
}

/** The override files a template's resources need on top of WORKER_COMPOSE_FILE. */
export function resourceComposeFiles(resources: ContainerResources | undefined): string[] {
  return resources?.gpus !== undefined ? [GPU_COMPOSE_FILE] : [];
}

/** `docker compose` or `docker-compose` failed. */
export class ComposeError extends AppError {
  constructor(action: string, detail: string, cause?: unknown) {
    super('COMPOSE_FAILED', `docker compose ${action} failed: ${detail}`, { cause });
  }
}

/**
 * What docker compose takes from the caller's environment: a program's basics (MODEL_HOST_ENV) and
 * where the engine is and the CLI's own settings. Compose interpolates the file from its
 * environment, so nothing else of provisioning's (AWS credentials, tokens, LOG_LEVEL...) can
 * reach a container through a variable the file names.
 */
export const COMPOSE_HOST_ENV: readonly string[] = Object.freeze([
  ...MODEL_HOST_ENV,
  'DOCKER_HOST',
  'DOCKER_CONTEXT',
  'DOCKER_CONFIG',
  'DOCKER_CERT_PATH',
  'DOCKER_TLS_VERIFY',
]);

type Exec = (file: string, args: string[], env?: NodeJS.ProcessEnv) => Promise<{ stdout: string; stderr: string }>;

const run: Exec = (file, args, env) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: 300_000, maxBuffer: 8 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(Object.assign(error, { stderr }));
      else resolve({ stdout, stderr });
    });
  });

/**
 * Runs docker compose for one project: the v2 plugin (`docker compose`) where it exists, else
 * Debian's standalone `docker-compose` 1.29.
 */
export class Compose {
  readonly #env: NodeJS.ProcessEnv;
  readonly #exec: Exec;
  #command: Promise<string[]> | undefined;

  /** Compose runs in the COMPOSE_HOST_ENV part of `env` (the rest is dropped); variables for the file are given per call. */
  constructor(env: NodeJS.ProcessEnv, exec: Exec = run) {
    this.#env = pickEnv(env, COMPOSE_HOST_ENV);
    this.#exec = exec;
  }

  /** `up -d` the file's services under `project`, with `variables` substituted into the file and `overrides` (compose files) on top of it. */
  async up(project: string, variables: Record<string, string>, overrides: readonly string[] = []): Promise<void> {
    await this.#run('up', project, variables, overrides, ['up', '-d', '--remove-orphans']);
  }

  /** Stop and remove the project's containers. */
  async down(project: string, variables: Record<string, string>, overrides: readonly string[] = []): Promise<void> {
    await this.#run('down', project, variables, overrides, ['down', '--remove-orphans', '--timeout', '10']);
  }

  async #run(action: string, project: string, variables: Record<string, string>, overrides: readonly string[], args: string[]): Promise<void> {
    const [file, ...prefix] = await this.#resolve();
    const files = [WORKER_COMPOSE_FILE, ...overrides].flatMap((path) => ['--file', path]);
    try {
      await this.#exec(file!, [...prefix, '--project-name', project, ...files, ...args], { ...this.#env, ...variables });
    } catch (error) {
      const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
      const detail = stderr.split('\n').filter(Boolean).at(-1) ?? (error as Error).message;
      if (GPU_REFUSAL.test(stderr)) throw new GpuUnavailableError(`compose project ${project}`, this.#env.DOCKER_HOST ?? 'unix:///var/run/docker.sock', new ComposeError(`${action} (project ${project})`, detail, error));
      throw new ComposeError(`${action} (project ${project})`, detail, error);
    }
  }

  #resolve(): Promise<string[]> {
    this.#command ??= this.#exec('docker', ['compose', 'version'], this.#env).then(
      () => ['docker', 'compose'],
      () =>
        this.#exec('docker-compose', ['version'], this.#env).then(
          () => ['docker-compose'],
          (error: unknown) => {
            throw new ComposeError('version', 'neither `docker compose` nor `docker-compose` is installed', error);
          },
        ),
    );
    return this.#command;
  }
}

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { REPO_ROOT, RUNNING_COMPILED } from '../../common/src/paths.js';
import { pollWithin } from '../../common/src/poll-until.js';
import { containerEnv, MODEL_HOST_ENV, pickEnv, type ContainerInfo, type ContainerSpec, type RunState, type RuntimeDriver } from './driver.js';
import { ContainerExistsError, PortInUseError, RegistryError, ResourcesUnsupportedError, SpawnError, StopFailedError } from './errors.js';

const execFileAsync = promisify(execFile);

/**
 * The worker app in the same flavour as this code: compiled JavaScript from dist/ (starts in a
 * fraction of the time), or the sources through tsx. The tsx loader is passed as an absolute URL
 * so that `--import` resolves no matter which directory the caller (or the child) runs in.
 */
export const DEFAULT_WORKER_COMMAND: readonly string[] = Object.freeze(
  RUNNING_COMPILED
    ? [process.execPath, join(REPO_ROOT, 'dist/worker/src/main.js')]
    : [process.execPath, '--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href, join(REPO_ROOT, 'worker/src/main.ts')],
);

/** Where the process driver of a cluster keeps its registry and logs: next to the state file, `run/<cluster>` and `logs/<cluster>`. */
export function processDriverDirs(statePath: string, cluster: string): { stateDir: string; logDir: string } {
  const base = dirname(statePath);
  return { stateDir: join(base, 'run', cluster), logDir: join(base, 'logs', cluster) };
}

const registryEntrySchema = z.object({
  pid: z.number().int().positive(),
  name: z.string().min(1),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  labels: z.record(z.string(), z.string()),
  /** Exact argv the process was started with: how we recognise it again (pid reuse guard). */
  command: z.array(z.string()).min(1),
  logPath: z.string(),
  startedAt: z.string(),
});
/** One `<stateDir>/<name>.json` file: what the driver knows of a process it started. */
export type RegistryEntry = z.infer<typeof registryEntrySchema>;

export interface ProcessDriverOptions {
  /** Folder of the registry, one `<name>.json` per container, e.g. `status/run/<cluster>`. */
  stateDir: string;
  /** Folder of per-container logs (`<name>.log`, appended, kept after remove). @default `<stateDir>/logs` */
  logDir?: string;
  /** argv of the model app. @default DEFAULT_WORKER_COMMAND */
  command?: readonly string[];
  /** Working directory of started processes. @default the repository root */
  cwd?: string;
}

/** How often stop() looks whether the process is gone, in ms. */
const STOP_POLL_MS = 50;
/** How long a process may take to vanish after SIGKILL, in ms. */
const KILL_GRACE_MS = 2_000;

/**
 * Runs each container as a detached local process (own process group, outlives the caller).
 * The registry on disk is the source of truth, so another instance over the same stateDir
 * finds the processes again; runtimeId is the pid.
 */
export class ProcessDriver implements RuntimeDriver {
  readonly kind = 'process';
  /** Spawning is cheap; the starts' cost is the models' own boot, which overlaps well. */
  readonly concurrency = 4;
  readonly stateDir: string;
  readonly logDir: string;
  readonly command: readonly string[];
  readonly #cwd: string;
  /** Exit codes of processes this instance spawned; unknown (null) for processes found on disk. */
  readonly #exitCodes = new Map<number, number | null>();

  constructor(options: ProcessDriverOptions) {
    this.stateDir = options.stateDir;
    this.logDir = options.logDir ?? join(options.stateDir, 'logs');
    this.command = options.command ?? DEFAULT_WORKER_COMMAND;
    this.#cwd = options.cwd ?? REPO_ROOT;
  }

  async start(spec: ContainerSpec): Promise<ContainerInfo> {
    // Provisioning refuses resources with runtime process, but a state file may still carry them: never run unlimited silently.
    if (spec.resources && Object.keys(spec.resources).length > 0) throw new ResourcesUnsupportedError(spec.name, this.kind);
    const existing = await this.#readEntry(this.#entryPath(spec.name));
    if (existing && (await isOurProcess(existing))) throw new ContainerExistsError(spec.name, String(existing.pid));
    if (await isPortTaken(spec.host, spec.port)) throw new PortInUseError(spec.host, spec.port);

    await mkdir(this.stateDir, { recursive: true });
    await mkdir(this.logDir, { recursive: true });
    const logPath = join(this.logDir, `${spec.name}.log`);
    const logFd = openSync(logPath, 'a');
    const [file, ...args] = this.command;
    let child: ChildProcess;
    try {
      child = spawn(file!, args, {
        cwd: this.#cwd,
        // Never the caller's whole environment: it holds the orchestrator's token and cloud credentials.
        env: { ...pickEnv(process.env, MODEL_HOST_ENV), ...containerEnv(spec, spec.host) },
        // Own process group, so stop() reaches the app's children too and Ctrl-C in the caller does not.
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
    } finally {
      // The child holds its own copy of the descriptor.
      closeSync(logFd);
    }
    const pid = await spawned(child, spec.name);
    child.on('exit', (code) => this.#exitCodes.set(pid, code));
    child.unref();

    const entry: RegistryEntry = {
      pid,
      name: spec.name,
      host: spec.host,
      port: spec.port,
      labels: { ...spec.labels },
      command: [...this.command],
      logPath,
      startedAt: new Date().toISOString(),
    };
    try {
      await writeAtomic(this.#entryPath(spec.name), JSON.stringify(entry, null, 2) + '\n');
    } catch (error) {
      // Unregistered, it could never be found and stopped again.
      signalGroup(pid, 'SIGKILL');
      throw error;
    }
    return this.#info(entry, 'running');
  }

  async stop(runtimeId: string, options: { timeoutMs?: number } = {}): Promise<void> {
    const entry = await this.#findByRuntimeId(runtimeId);
    if (!entry) return;
    const status = await processStatus(entry);
    // Without a matching command line we cannot prove the pid is ours: never signal it.
    if (status !== 'ours') {
      if (status === 'exiting') await waitGone(entry, KILL_GRACE_MS);
      return;
    }
    signalGroup(entry.pid, 'SIGTERM');
    if (await waitGone(entry, options.timeoutMs ?? 5_000)) return;
    signalGroup(entry.pid, 'SIGKILL');
    if (!(await waitGone(entry, KILL_GRACE_MS))) throw new StopFailedError(runtimeId);
  }

  /** Stops it if still running (so nothing is left unfindable), then deletes the registry entry; logs are kept. */
  async remove(runtimeId: string): Promise<void> {
    const entry = await this.#findByRuntimeId(runtimeId);
    if (!entry) return;
    await this.stop(runtimeId);
    await rm(this.#entryPath(entry.name), { force: true });
    this.#exitCodes.delete(entry.pid);
  }

  async inspect(runtimeId: string): Promise<ContainerInfo | null> {
    const entry = await this.#findByRuntimeId(runtimeId);
    return entry ? this.#info(entry, (await isOurProcess(entry)) ? 'running' : 'exited') : null;
  }

  async list(labels: Record<string, string>): Promise<ContainerInfo[]> {
    const wanted = Object.entries(labels);
    const matching = (await this.#entries()).filter((entry) => wanted.every(([key, value]) => entry.labels[key] === value));
    return Promise.all(matching.map(async (entry) => this.#info(entry, (await isOurProcess(entry)) ? 'running' : 'exited')));
  }

  #entryPath(name: string): string {
    return join(this.stateDir, `${name}.json`);
  }

  #info(entry: RegistryEntry, state: RunState): ContainerInfo {
    return {
      runtimeId: String(entry.pid),
      name: entry.name,
      state,
      labels: { ...entry.labels },
      host: entry.host,
      port: entry.port,
      exitCode: state === 'exited' ? (this.#exitCodes.get(entry.pid) ?? null) : null,
    };
  }

  async #findByRuntimeId(runtimeId: string): Promise<RegistryEntry | null> {
    return (await this.#entries()).find((entry) => String(entry.pid) === runtimeId) ?? null;
  }

  async #entries(): Promise<RegistryEntry[]> {
    let names: string[];
    try {
      names = await readdir(this.stateDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    // Dot files are temp files of an atomic write in progress.
    const files = names.filter((name) => name.endsWith('.json') && !name.startsWith('.'));
    const entries = await Promise.all(files.map((name) => this.#readEntry(join(this.stateDir, name))));
    return entries.filter((entry): entry is RegistryEntry => entry !== null);
  }

  async #readEntry(path: string): Promise<RegistryEntry | null> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      // Removed between readdir and readFile by a concurrent remove(): simply gone.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new RegistryError(path, 'unreadable', error);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new RegistryError(path, 'not JSON', error);
    }
    const result = registryEntrySchema.safeParse(json);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      throw new RegistryError(path, `${issue.path.join('.') || 'root'}: ${issue.message}`);
    }
    return result.data;
  }
}

/** Resolves with the pid once the OS started the program, rejects with SpawnError when it could not (e.g. ENOENT). */
function spawned(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new SpawnError(name, error)));
    child.once('spawn', () => resolve(child.pid!));
  });
}

/**
 * Whether something already holds host:port, found by binding it ourselves: unlike a connect
 * probe this sees listeners on a wildcard address too, and is not fooled by network mocks.
 */
function isPortTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      // Other failures (EACCES, EADDRNOTAVAIL) hit the container too and show in its log.
      resolve(error.code === 'EADDRINUSE');
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/**
 * What became of the entry's process. `ours`: alive AND still running the entry's command, since
 * after a reboot or a long time the pid may belong to another program, which must never be
 * reported as ours or signalled. `exiting`: dead, but some of its threads still close their files
 * (and may hold its port). `gone`: dead or someone else's.
 */
async function processStatus(entry: RegistryEntry): Promise<'ours' | 'exiting' | 'gone'> {
  try {
    process.kill(entry.pid, 0);
  } catch {
    // ESRCH: gone. EPERM: alive but another user's, so certainly not a process we started.
    return 'gone';
  }
  if (process.platform === 'linux') {
    // A multi-threaded process (node is one) shows its main thread as a zombie until the last thread exits.
    if (await isZombie(entry.pid)) return (await threadCount(entry.pid)) > 1 ? 'exiting' : 'gone';
    const argv = await readProcFile(entry.pid, 'cmdline');
    return argv !== null && argv === entry.command.join('\0') + '\0' ? 'ours' : 'gone';
  }
  try {
    // -ww: never cut the command line to the terminal width (79 columns when there is none).
    const { stdout } = await execFileAsync('ps', ['-ww', '-o', 'command=', '-p', String(entry.pid)]);
    return stdout.trim() === entry.command.join(' ') ? 'ours' : 'gone';
  } catch {
    // ps exits 1 when there is no such process.
    return 'gone';
  }
}

async function isOurProcess(entry: RegistryEntry): Promise<boolean> {
  return (await processStatus(entry)) === 'ours';
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readProcFile(pid, 'stat');
  // The state letter follows the command name, which is in parentheses and may itself contain ") ".
  return stat !== null && stat[stat.lastIndexOf(') ') + 2] === 'Z';
}

async function threadCount(pid: number): Promise<number> {
  try {
    return (await readdir(`/proc/${pid}/task`)).length;
  } catch {
    return 0;
  }
}

async function readProcFile(pid: number, name: string): Promise<string | null> {
  try {
    return await readFile(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return null;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Polls until the process is gone, threads and all; false when `timeoutMs` passed first. */
async function waitGone(entry: RegistryEntry, timeoutMs: number): Promise<boolean> {
  return (await pollWithin(async () => ((await processStatus(entry)) === 'gone' ? true : undefined), { timeoutMs, intervalMs: STOP_POLL_MS })) ?? false;
}

/** Write via a temp file and rename, so a reader never sees half an entry. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${process.pid}-${Date.now()}.tmp`);
  await writeFile(temp, text);
  await rename(temp, path);
}

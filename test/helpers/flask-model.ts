import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { REPO_ROOT } from './cli.js';
import { pidAlive } from './processes.js';

/** Debian's interpreter, which gets Flask from apt (python3-flask); a pyenv `python3` on PATH may lack it. */
export const SYSTEM_PYTHON = '/usr/bin/python3';
export const FLASK_APP = join(REPO_ROOT, 'examples/flask-model/app.py');
const INSTALLER = join(REPO_ROOT, 'scripts/flask.sh');

/** Only what the app needs: a developer's PYTHONPATH or PYTHONHOME must not reach the system interpreter. */
function pythonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1', ...extra };
}

function run(file: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: REPO_ROOT, env: pythonEnv(), timeout: timeoutMs }, (error, stdout, stderr) =>
      resolve({ ok: error === null, output: `${stdout}${stderr}`.trim() || String(error?.message ?? '') }),
    );
  });
}

/**
 * Run scripts/flask.sh (installs python3-flask from apt when missing; a no-op otherwise), then make
 * sure /usr/bin/python3 imports Flask. Throws, never skips: a machine without Flask is a broken setup.
 */
export async function ensureFlask(timeoutMs = 280_000): Promise<void> {
  const installer = await run('bash', [INSTALLER], timeoutMs);
  const probe = await run(SYSTEM_PYTHON, ['-c', 'import flask'], 10_000);
  if (!probe.ok) {
    throw new Error(
      `${SYSTEM_PYTHON} cannot import flask: install python3-flask (apt-get install -y python3-flask python3-requests, ` +
        `or run scripts/flask.sh as root). scripts/flask.sh said: ${installer.output || '(nothing)'}; python said: ${probe.output}`,
    );
  }
}

export interface FlaskApp {
  readonly id: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Exit code (null when killed by a signal), once the process has exited. */
  readonly exited: Promise<number | null>;
  /** Last few KB of its stdout and stderr, for failure messages. */
  output(): string;
}

/** Start examples/flask-model/app.py on 127.0.0.1:`port` and resolve once its /health names `id`. */
export async function startFlaskApp(id: string, port: number, env: Record<string, string> = {}, timeoutMs = 15_000): Promise<FlaskApp> {
  const child = spawn(SYSTEM_PYTHON, [FLASK_APP], {
    cwd: REPO_ROOT,
    env: pythonEnv({ ...env, HOST: '127.0.0.1', PORT: String(port), CONTAINER_ID: id }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  // Werkzeug logs a line per request: keep reading so the pipe never fills, keep only the tail.
  const keep = (chunk: Buffer): void => {
    log = (log + chunk.toString()).slice(-4_096);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    });
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  const app: FlaskApp = { id, port, pid: child.pid ?? -1, child, exited, output: () => log };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) throw new Error(`cannot start ${SYSTEM_PYTHON}: ${spawnError.message}`);
    if (exitCode !== undefined) throw new Error(`flask app ${id} exited with ${exitCode} before answering /health:\n${log}`);
    const container = await healthContainer(port);
    if (container === id) return app;
    if (Date.now() > deadline) {
      stopFlaskApps([app], 'SIGKILL');
      throw new Error(`flask app ${id} did not answer /health on port ${port} within ${timeoutMs} ms (got ${container ?? 'nothing'}):\n${log}`);
    }
    await sleep(50);
  }
}

async function healthContainer(port: number): Promise<string | undefined> {
  try {
    const response = await request(`http://127.0.0.1:${port}/health`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
    const body = (await response.body.json()) as { container?: string };
    return response.statusCode === 200 ? body.container : undefined;
  } catch {
    return undefined;
  }
}

/** Signal each app still alive, by its own pid. */
export function stopFlaskApps(apps: readonly FlaskApp[], signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const app of apps) {
    if (app.pid > 0 && pidAlive(app.pid)) app.child.kill(signal);
  }
}

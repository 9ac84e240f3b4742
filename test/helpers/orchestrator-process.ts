import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { afterEach } from 'vitest';
import type { z } from 'zod';
import {
  containerTemplateSchema,
  emptyState,
  stateFileSchema,
  workerRecordSchema,
  type ContainerRecord,
  type RuntimeTarget,
  type StateFile,
} from '../../status/src/schema.js';
import { fetchLiveStatus } from '../../status/src/live-status.js';
import type { Backend } from './backend.js';
import { NETWORK_GUARD, REPO_ROOT, run, type CliResult } from './cli.js';
import { TEST_PORT_STRIDE, type TempCluster } from './cluster.js';

/** The test process's environment without developer settings (ORCH_*, PROVISION_*), for CLI runs. */
export const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(ORCH|PROVISION)_/.test(key)));

/** The orchestrator as `npm start` runs it: compiled (by the global setup). */
export const ORCHESTRATOR_ENTRY = 'dist/orchestrator/src/main.js';

export interface OrchestratorProcess {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  /** What it wrote so far: its JSON log lines (stdout) and stderr, which also goes on to the test's stderr. */
  output: { stdout: string; stderr: string };
}

/**
 * Start the real orchestrator as `npm start` does on a free port, with more flags if given, and
 * `env` over cleanEnv; resolves once it listens.
 */
export function startOrchestrator(statePath: string, flags: string[] = [], options: { env?: NodeJS.ProcessEnv } = {}): Promise<OrchestratorProcess> {
  const child = spawn(process.execPath, ['--import', NETWORK_GUARD, ORCHESTRATOR_ENTRY, '--port', '0', '--state-path', statePath, ...flags], {
    cwd: REPO_ROOT,
    env: { ...cleanEnv, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const output = { stdout: '', stderr: '' };
  child.stderr!.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString('utf8');
    process.stderr.write(chunk);
  });
  return new Promise((resolve, reject) => {
    // Never leave it running when it does not come up: the caller has no handle to stop it.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('orchestrator did not log "orchestrator listening" within 30 s'));
    }, 30_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      output.stdout += `${line}\n`;
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg !== 'orchestrator listening') return;
      clearTimeout(timer);
      resolve({ child, url: entry.url!, exited, output });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`orchestrator exited with ${code} before listening`));
    });
  });
}

/** Run the orchestrator (as startOrchestrator does) until it exits by itself, for runs that must not start; killed after `timeoutMs`. */
export function runOrchestrator(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return run(process.execPath, [ORCHESTRATOR_ENTRY, ...args], { env: { ...cleanEnv, ...options.env }, timeoutMs: options.timeoutMs ?? 20_000 });
}

/** The state file, validated. */
export async function readState(path: string): Promise<StateFile> {
  return stateFileSchema.parse(JSON.parse(await readFile(path, 'utf8')));
}

/** GET /status of a running orchestrator, validated. */
export const liveStatus = (url: string, key?: string): Promise<StateFile> => fetchLiveStatus(`${url}/status`, 10_000, key);

/** A model container's own /health counters. */
export async function containerHealth(url: string): Promise<{ served: number; maxInFlight: number; container: string }> {
  const response = await request(`${url}/health`);
  return (await response.body.json()) as { served: number; maxInFlight: number; container: string };
}

/** SIGTERM (it drains), then wait for the exit; a no-op when it is not running. */
export async function stopOrchestrator(orchestrator: OrchestratorProcess | undefined): Promise<void> {
  if (!orchestrator || orchestrator.child.exitCode !== null) return;
  orchestrator.child.kill('SIGTERM');
  await orchestrator.exited;
}

/**
 * Write an inventory of `workers` local workers w1.. (worker k on ports basePort+(k-1)*TEST_PORT_STRIDE
 * and the next four), all run by `runtime` and started from `template`, with these containers.
 */
export async function writeInventory(
  cluster: Pick<TempCluster, 'statePath' | 'basePort'>,
  options: { name?: string; workers: number; runtime: RuntimeTarget; template: z.input<typeof containerTemplateSchema>; containers?: ContainerRecord[] },
): Promise<void> {
  const state = emptyState(options.name ?? 'local', 'provisioning');
  for (let k = 0; k < options.workers; k++) {
    const first = cluster.basePort + k * TEST_PORT_STRIDE;
    state.workers.push(
      workerRecordSchema.parse({
        id: `w${k + 1}`,
        provider: 'local',
        host: '127.0.0.1',
        runtime: options.runtime,
        ports: { first, last: first + 4 },
        template: options.template,
      }),
    );
  }
  state.containers.push(...(options.containers ?? []));
  await writeFile(cluster.statePath, JSON.stringify(state));
}

/** One backend and the compiled orchestrator a test starts over it. */
export interface ProcessRig {
  backend?: Backend;
  orchestrator?: OrchestratorProcess;
}

/** A rig stopped after each test of the describe, even a failed one: the orchestrator killed if still running, then the backend. */
export function useProcessRig(): ProcessRig {
  const rig: ProcessRig = {};
  afterEach(async () => {
    if (rig.orchestrator?.child.exitCode === null) rig.orchestrator.child.kill('SIGKILL');
    await rig.orchestrator?.exited;
    await rig.backend?.kill();
    rig.orchestrator = undefined;
    rig.backend = undefined;
  });
  return rig;
}

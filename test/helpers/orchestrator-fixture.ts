import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { createLogger, type Logger } from '../../common/src/logger.js';
import { loadOrchestratorConfig, type OrchestratorConfig } from '../../orchestrator/src/config.js';
import { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import type { ModelContract } from '../../status/src/schema.js';
import type { Backend } from './backend.js';

export interface RunningOrchestrator {
  orchestrator: Orchestrator;
  url: string;
  config: OrchestratorConfig;
  statePath: string;
  close(): Promise<void>;
}

/** Start an orchestrator on 127.0.0.1:0 over these backends (whose apps follow `contract`) with a temp state file. */
export async function startOrchestrator(
  backends: ReadonlyArray<Pick<Backend, 'id' | 'port'>>,
  overrides: Record<string, unknown> = {},
  log: Logger = createLogger('orchestrator', 'silent'),
  contract?: ModelContract,
): Promise<RunningOrchestrator> {
  const dir = await mkdtemp(join(tmpdir(), 'orch-test-'));
  const statePath = join(dir, 'state.json');
  await writeFile(statePath, JSON.stringify(unmanagedInventory('test', backends, contract)));
  const config = loadOrchestratorConfig({
    flags: { port: 0, statePath, healthIntervalMs: 100, statusWriteIntervalMs: 50, shutdownTimeoutMs: 5_000, ...overrides },
  });
  const orchestrator = await Orchestrator.create(config, log);
  const url = await orchestrator.listen();
  return {
    orchestrator,
    url,
    config,
    statePath,
    close: async () => {
      await orchestrator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** What one test starts: its backends and the orchestrator over them. */
export interface Rig {
  backends: Backend[];
  running: RunningOrchestrator | undefined;
}

/**
 * A rig stopped after each test of the file, even a failed one: requests held by manual backends
 * are answered first (so the orchestrator can drain), then the orchestrator, then the backends.
 */
export function useRig(): Rig {
  const rig: Rig = { backends: [], running: undefined };
  afterEach(async () => {
    for (const b of rig.backends) while (b.held > 0) b.answerNext();
    await stopRig(rig.running, rig.backends);
    rig.backends = [];
    rig.running = undefined;
  });
  return rig;
}

/** Stop what one test started: the orchestrator first (it drains), then the backends. */
export async function stopRig(running: RunningOrchestrator | undefined, backends: readonly Backend[]): Promise<void> {
  await running?.close();
  await Promise.all(backends.map((b) => b.kill().catch(() => undefined)));
}

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { afterEach, beforeEach } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';

/** Port distance between workers in tests: small, so a cluster fits in a short free range. */
export const TEST_PORT_STRIDE = 10;

/** A throwaway cluster: its own state file, registry and logs in a temp folder, on free ports. */
export interface TempCluster {
  dir: string;
  statePath: string;
  basePort: number;
  /** A validated config for this cluster; `flags` as on the command line (camelCase keys). */
  config(flags?: Record<string, unknown>): ProvisionConfig;
  /** The command-line flags that point a CLI run at this cluster. */
  cliFlags: string[];
  /** Stop whatever the registry still lists (guarded against pid reuse), then delete the folder. */
  cleanup(): Promise<void>;
}

/** Reserve ports for up to `maxWorkers` workers of up to 5 containers each. */
export async function tempCluster(maxWorkers = 3): Promise<TempCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'provision-'));
  const statePath = join(dir, 'state.json');
  const offsets = Array.from({ length: maxWorkers }, (_, w) => [0, 1, 2, 3, 4].map((i) => w * TEST_PORT_STRIDE + i)).flat();
  const basePort = await freeBasePort(offsets);
  return {
    dir,
    statePath,
    basePort,
    config: (flags = {}) =>
      loadProvisionConfig({ env: {}, flags: { statePath, basePort, portStride: TEST_PORT_STRIDE, healthTimeoutMs: 15_000, logLevel: 'silent', ...flags } }),
    cliFlags: ['--state-path', statePath, '--base-port', String(basePort), '--port-stride', String(TEST_PORT_STRIDE)],
    async cleanup() {
      const clusters = await readdir(join(dir, 'run')).catch(() => []);
      for (const cluster of clusters) {
        const driver = new ProcessDriver({ stateDir: processDriverDirs(statePath, cluster).stateDir });
        const left = await driver.list({}).catch(() => []);
        await Promise.allSettled(left.map((info) => driver.stop(info.runtimeId, { timeoutMs: 1_000 })));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A fresh temp cluster for each test of the suite, cleaned up after it even when it fails. The
 * returned object always stands for the current test's cluster. Hooks a suite registers after
 * this one run before the cleanup (vitest runs after-hooks in reverse), so a suite stops what it
 * started on the cluster first.
 */
export function useTempCluster(maxWorkers = 3): TempCluster {
  let current: TempCluster | undefined;
  const now = (): TempCluster => {
    if (!current) throw new Error('useTempCluster: the cluster exists only inside a test');
    return current;
  };
  beforeEach(async () => {
    current = await tempCluster(maxWorkers);
  });
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });
  return {
    get dir() {
      return now().dir;
    },
    get statePath() {
      return now().statePath;
    },
    get basePort() {
      return now().basePort;
    },
    get cliFlags() {
      return now().cliFlags;
    },
    config: (flags) => now().config(flags),
    cleanup: () => now().cleanup(),
  };
}

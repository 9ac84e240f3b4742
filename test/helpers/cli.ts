import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from '../../common/src/paths.js';

/** The repository root: CLIs run from here, as `npm run ...` runs them. */
export { REPO_ROOT };

export interface CliResult {
  /** Exit code; null when the process was killed by a signal or timed out. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command from the repository root; never rejects, the exit code tells. */
export function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: REPO_ROOT, env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

/** The test network guard, loaded into every Node CLI a test starts (any address outside 127/8 ends it with exit 97). */
export const NETWORK_GUARD = fileURLToPath(new URL('./network-guard.mjs', import.meta.url));

/** Run a TypeScript entry point (e.g. `load/src/main.ts`) as its npm script does: node with tsx, no terminal; plus the network guard. */
export function runEntry(entry: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return run(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', entry, ...args], options);
}

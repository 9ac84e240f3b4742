import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { pollWithin } from '../../common/src/poll-until.js';

/** The stand-in worker (same /health contract as worker/src/main.ts), run by plain node. */
export const FAKE_WORKER_COMMAND = [process.execPath, fileURLToPath(new URL('../provisioning/fixtures/fake-worker.mjs', import.meta.url))];

/** Whether a pid exists; a zombie counts as gone once its last thread has exited (and closed its sockets). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (process.platform !== 'linux') return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const zombie = stat[stat.lastIndexOf(') ') + 2] === 'Z';
    return !zombie || readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

/** Waits until none of these pids is alive; false after `timeoutMs`. */
export async function pidsGone(pids: number[], timeoutMs = 3_000): Promise<boolean> {
  return (await pollWithin(async () => (pids.some(pidAlive) ? undefined : true), { timeoutMs, intervalMs: 50 })) ?? false;
}

/** Last-resort cleanup: SIGKILL the process groups of these pids, ignoring the ones already gone. */
export function killGroups(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The environment a running process was started with, as the kernel keeps it (/proc/<pid>/environ; Linux). */
export async function processEnvironment(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(
    text
      .split('\0')
      .filter(Boolean)
      .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
}

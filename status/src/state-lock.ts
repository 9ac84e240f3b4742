import { randomUUID } from 'node:crypto';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { AppError } from '../../common/src/errors.js';

/** Who holds a state file's lock: the orchestrator that writes that file. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  startedAt: string;
}

/** Another orchestrator holds the state file's lock (or takes it this very moment: no holder yet). */
export class StateLockedError extends AppError {
  readonly holder: LockHolder | undefined;

  constructor(statePath: string, holder: LockHolder | undefined) {
    const who = !holder ? 'another orchestrator is starting' : `an orchestrator (pid ${holder.pid}${holder.hostname === hostname() ? '' : ` on ${holder.hostname}; delete ${lockPathOf(statePath)} if it is not running`}) already runs`;
    super('STATE_LOCKED', `${who} on ${statePath}; stop it, or use another --state-path`, { expose: true });
    this.holder = holder;
  }
}

/** A lock this process holds. */
export interface StateLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Remove the lock file if it is still this one (a lock found stale and replaced is someone else's now). Idempotent. */
  release(): Promise<void>;
}

/** The lock file of a state file: one orchestrator per state file. */
export const lockPathOf = (statePath: string): string => `${statePath}.lock`;

/** Whether a process with this pid exists on this host (EPERM: it exists, another user's). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the state file's lock for this process, or throw StateLockedError naming the live holder.
 * A stale lock (its pid dead on this host, or a file that is not a lock) is replaced. A lock of
 * another host cannot be checked, so it counts as held.
 */
export async function acquireStateLock(statePath: string): Promise<StateLock> {
  const path = lockPathOf(statePath);
  const holder: LockHolder = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  const content = JSON.stringify(holder);
  // Written whole under a name of its own, then linked into place: link fails if the lock exists
  // (as O_EXCL does), and a reader never sees a lock half written, which it would take for stale.
  const temp = `${path}.${process.pid}.${randomUUID()}`;
  await writeFile(temp, content, { flag: 'wx' });
  try {
    try {
      await link(temp, path);
      return ownLock(path, holder, content);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const found = await readLockFile(path);
    if (found?.holder && !isStale(found.holder)) throw new StateLockedError(statePath, found.holder);
    await replaceStale(statePath, temp);
    return ownLock(path, holder, content);
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * Replace a stale lock with ours (the file at `temp`). Several may find the same stale lock at
 * once: one at a time breaks it, holding `<lock>.break` (taken exclusively); under it the lock is
 * read again and, still stale, atomically replaced (rename), so it never goes missing for a
 * third to take. The others are refused. A break file left by a process that died in those few
 * steps is removed, and this start refused: the next one goes through.
 */
async function replaceStale(statePath: string, temp: string): Promise<void> {
  const path = lockPathOf(statePath);
  const breakPath = `${path}.break`;
  try {
    await link(temp, breakPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const breaker = await readLockFile(breakPath);
    if (!breaker?.holder || isStale(breaker.holder)) await rm(breakPath, { force: true });
    throw new StateLockedError(statePath, undefined);
  }
  try {
    const found = await readLockFile(path);
    if (found?.holder && !isStale(found.holder)) throw new StateLockedError(statePath, found.holder);
    if (found) await rename(temp, path);
    // Released meanwhile: taken the usual way, since a fresh lock may be linked in at any moment.
    else if (!(await link(temp, path).then(() => true, () => false))) throw new StateLockedError(statePath, (await readLockFile(path))?.holder);
  } finally {
    await rm(breakPath, { force: true });
  }
}

function ownLock(path: string, holder: LockHolder, content: string): StateLock {
  let released: Promise<void> | undefined;
  return {
    path,
    holder,
    release() {
      released ??= (async () => {
        const found = await readLockFile(path);
        if (found?.text === content) await rm(path, { force: true });
      })();
      return released;
    },
  };
}

/** The live holder of the state file's lock on this host, or null (no lock, a stale one, or another host's). */
export async function readStateLock(statePath: string): Promise<LockHolder | null> {
  const found = await readLockFile(lockPathOf(statePath));
  return found?.holder && found.holder.hostname === hostname() && isPidAlive(found.holder.pid) ? found.holder : null;
}

const isStale = (holder: LockHolder): boolean => holder.hostname === hostname() && !isPidAlive(holder.pid);

/** The lock file's text and holder (undefined when it is not a lock); undefined when there is no file. */
async function readLockFile(path: string): Promise<{ text: string; holder: LockHolder | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return { text, holder: parseHolder(text) };
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    return Number.isInteger(value.pid) && typeof value.hostname === 'string' && typeof value.startedAt === 'string' ? (value as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

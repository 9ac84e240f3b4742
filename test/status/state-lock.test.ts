import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireStateLock, lockPathOf, readStateLock, StateLockedError, type LockHolder } from '../../status/src/state-lock.js';

let dir: string;
let statePath: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'state-lock-'));
  statePath = join(dir, 'state.json');
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** A process that runs until the test ends: a live pid that is not this one. */
function liveProcess(): number {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
  children.push(child);
  return child.pid!;
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  return child.pid!;
}

const writeLock = (holder: LockHolder | string): Promise<void> => writeFile(lockPathOf(statePath), typeof holder === 'string' ? holder : JSON.stringify(holder));
const lockFile = async (): Promise<LockHolder> => JSON.parse(await readFile(lockPathOf(statePath), 'utf8')) as LockHolder;
const holderOf = (pid: number): LockHolder => ({ pid, hostname: hostname(), startedAt: new Date().toISOString() });

describe('acquireStateLock', () => {
  it('writes the holder next to the state file', async () => {
    const lock = await acquireStateLock(statePath);
    expect(await lockFile()).toEqual({ pid: process.pid, hostname: hostname(), startedAt: expect.any(String) });
    expect(lock.holder).toEqual(await lockFile());
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a second acquire while the first holds it, naming the holder', async () => {
    const first = await acquireStateLock(statePath);
    const refused = await acquireStateLock(statePath).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StateLockedError);
    expect(refused).toMatchObject({ code: 'STATE_LOCKED', holder: { pid: process.pid } });
    expect(await lockFile()).toEqual(first.holder);
    await first.release();
    // Free again once released.
    await (await acquireStateLock(statePath)).release();
  });

  it('refuses a lock held by another live process', async () => {
    const other = holderOf(liveProcess());
    await writeLock(other);
    await expect(acquireStateLock(statePath)).rejects.toMatchObject({ code: 'STATE_LOCKED', holder: other });
    expect(await lockFile()).toEqual(other);
  });

  it('replaces a stale lock whose process has exited', async () => {
    await writeLock(holderOf(await deadPid()));
    const lock = await acquireStateLock(statePath);
    expect(await lockFile()).toEqual(lock.holder);
    expect(lock.holder.pid).toBe(process.pid);
    await lock.release();
  });

  it('replaces a lock file that is not a lock', async () => {
    await writeLock('{"pid":');
    const lock = await acquireStateLock(statePath);
    expect(await lockFile()).toEqual(lock.holder);
    await lock.release();
  });

  it('counts a lock of another host as held: its pid cannot be checked from here', async () => {
    const other = { ...holderOf(await deadPid()), hostname: `not-${hostname()}` };
    await writeLock(other);
    await expect(acquireStateLock(statePath)).rejects.toMatchObject({ code: 'STATE_LOCKED', holder: other });
  });

  it('refuses once, then replaces, a stale lock whose breaker died while replacing it', async () => {
    await writeLock(holderOf(await deadPid()));
    await writeFile(`${lockPathOf(statePath)}.break`, JSON.stringify(holderOf(await deadPid())));
    await expect(acquireStateLock(statePath)).rejects.toMatchObject({ code: 'STATE_LOCKED', holder: undefined });
    const lock = await acquireStateLock(statePath);
    expect(await lockFile()).toEqual(lock.holder);
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('lets exactly one of several acquiring at once replace a stale lock', async () => {
    for (let round = 0; round < 30; round++) {
      await writeLock(holderOf(await deadPid()));
      const results = await Promise.allSettled(Array.from({ length: 4 }, () => acquireStateLock(statePath)));
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(StateLockedError);
      const lock = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireStateLock>>>).value;
      expect(await lockFile()).toEqual(lock.holder);
      await lock.release();
      // Nothing left behind: no temp file, no stale lock moved aside.
      expect(await readdir(dir)).toEqual([]);
    }
  });
});

describe('release', () => {
  it("keeps someone else's lock: ours was found stale and replaced", async () => {
    const lock = await acquireStateLock(statePath);
    const other = holderOf(liveProcess());
    await writeLock(other);
    await lock.release();
    expect(await lockFile()).toEqual(other);
  });

  it('is idempotent', async () => {
    const lock = await acquireStateLock(statePath);
    await lock.release();
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('readStateLock', () => {
  it('names a live holder on this host', async () => {
    const other = holderOf(liveProcess());
    await writeLock(other);
    expect(await readStateLock(statePath)).toEqual(other);
  });

  it('is null without a lock, for a dead holder, for a file that is not a lock, and for another host', async () => {
    expect(await readStateLock(statePath)).toBeNull();
    await writeLock(holderOf(await deadPid()));
    expect(await readStateLock(statePath)).toBeNull();
    await writeLock('not json');
    expect(await readStateLock(statePath)).toBeNull();
    await writeLock({ ...holderOf(liveProcess()), hostname: `not-${hostname()}` });
    expect(await readStateLock(statePath)).toBeNull();
  });
});

import { watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Counts the writes of a status file as they land, from outside the process writing it. */
export interface StatusWriteCounter {
  readonly count: number;
  close(): void;
}

/**
 * The status store replaces its file atomically (a temp file renamed over it), so each write is one
 * rename onto `statePath`: counted through inotify, without reading or polling the file.
 */
export function countStatusWrites(statePath: string): StatusWriteCounter {
  const name = basename(statePath);
  let count = 0;
  const watcher = watch(dirname(statePath), (event, file) => {
    if (event === 'rename' && file === name) count++;
  });
  return {
    get count() {
      return count;
    },
    close: () => watcher.close(),
  };
}

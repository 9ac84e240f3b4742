import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { AppError } from '../../common/src/errors.js';
import { stateFileSchema, type StateFile } from './schema.js';

/**
 * The state file exists but is not ours (corrupted, another layout or version): it is never
 * overwritten. The message names the one command that deletes it and starts over.
 */
export class StateFileError extends AppError {
  constructor(path: string, reason: string, cause?: unknown) {
    super('STATE_FILE_INVALID', `state file ${path} is not a valid cluster state (${reason}); fix or move it, or start over with \`npm run provision -- --reset --state-path ${path}\``, {
      cause,
      expose: true,
    });
  }
}

/**
 * The JSON status store (lowdb). Writes go through lowdb's atomic writer (temp file + rename),
 * so a reader never sees a half-written file; concurrent writes are coalesced by it.
 */
export class StateStore {
  readonly path: string;
  readonly #db: Low<StateFile | null>;

  constructor(path: string) {
    this.path = path;
    this.#db = new Low<StateFile | null>(new JSONFile<StateFile | null>(path), null);
  }

  /** Read and validate the file; `null` when it does not exist. Throws StateFileError when it is not ours. */
  async read(): Promise<StateFile | null> {
    try {
      await this.#db.read();
    } catch (error) {
      // A file system error (a directory there, no permission) is not a broken file: a reset would not help.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== undefined) throw new AppError('STATE_FILE_UNREADABLE', `cannot read state file ${this.path} (${code})`, { cause: error, expose: true });
      throw new StateFileError(this.path, 'not JSON', error);
    }
    if (this.#db.data === null) return null;
    const result = stateFileSchema.safeParse(this.#db.data);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      throw new StateFileError(this.path, `${issue.path.join('.') || 'root'}: ${issue.message}`);
    }
    return result.data;
  }

  /** Replace the file's content atomically. */
  async write(state: StateFile): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    this.#db.data = { ...state, updatedAt: new Date().toISOString() };
    await this.#db.write();
  }
}

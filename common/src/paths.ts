import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);

/** Whether this code runs compiled (from dist/, as `npm start` does) rather than from the TypeScript sources (tsx). */
export const RUNNING_COMPILED = here.endsWith('.js');

/** The repository root (the folder with package.json), whether this code runs from the sources or from dist/. */
export const REPO_ROOT = ((): string => {
  for (let dir = dirname(here); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${here}`);
  }
})();

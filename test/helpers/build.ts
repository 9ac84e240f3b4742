import { execFileSync } from 'node:child_process';
import { REPO_ROOT } from '../../common/src/paths.js';

/** vitest global setup: compile once (`npm run build`), so suites run the orchestrator and workers as `npm start` does. */
export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
}

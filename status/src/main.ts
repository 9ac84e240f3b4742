import { runFlagsCli } from '../../common/src/cli.js';
import { AppError, UsageError } from '../../common/src/errors.js';
import { formatStatus, type StatusSource } from './print-status.js';
import { fetchLiveStatus } from './live-status.js';
import type { StateFile } from './schema.js';
import { StateStore } from './state-store.js';

const DEFAULT_URL = 'http://127.0.0.1:8080/status';
const DEFAULT_FILE = 'status/state.json';
/** Longest wait for the live orchestrator before falling back to the file, in ms. */
const LIVE_TIMEOUT_MS = 2_000;

const HELP = `Usage: npm run status -- [options]

Prints the cluster: workers, containers, queue and counters. Reads a running orchestrator's
GET /status, or the state file when no orchestrator answers.

Options:
  --url <url>      orchestrator status URL   default: the orchestrator provisioning
                                             deployed on EC2 (recorded in the state
                                             file), else ${DEFAULT_URL}
  --file <path>    state file                default ${DEFAULT_FILE}
  --json           print the state as JSON instead of tables
  --help           show this text

Environment:
  ORCHESTRATOR_KEY client key with the read scope, sent as Authorization: Bearer when
                   the orchestrator has client keys (without it, GET /status answers 401
                   and the state file is shown instead)

Exits 1 when neither source gives a valid state, 2 on bad options.
`;

const FLAGS = {
  url: { type: 'string' },
  file: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** The live state when the orchestrator answers, else the file's; one error naming both problems otherwise. */
async function readStatus(url: string, file: string, key: string | undefined): Promise<{ state: StateFile; source: StatusSource }> {
  let liveProblem: string;
  try {
    return { state: await fetchLiveStatus(url, LIVE_TIMEOUT_MS, key), source: { kind: 'live', url } };
  } catch (error) {
    liveProblem = (error as Error).message;
  }
  const unavailable = (code: string, fileProblem: string, cause?: unknown) =>
    new AppError(code, `no cluster status: orchestrator ${url}: ${liveProblem}; ${fileProblem}`, { cause });
  let state: StateFile | null;
  try {
    state = await new StateStore(file).read();
  } catch (error) {
    throw unavailable(error instanceof AppError ? error.code : 'STATUS_UNAVAILABLE', (error as Error).message, error);
  }
  if (state === null) throw unavailable('STATUS_UNAVAILABLE', `state file ${file}: not found`);
  // Said on stderr so that --json output stays clean; the header names the file as the source too.
  process.stderr.write(`note: orchestrator ${url}: ${liveProblem}; showing ${file}\n`);
  return { state, source: { kind: 'file', path: file } };
}

/** The status URL of an orchestrator provisioning deployed on an instance of its own, as the state file records it. */
async function recordedUrl(file: string): Promise<string | undefined> {
  const orchestrator = (await new StateStore(file).read().catch(() => null))?.orchestrator;
  return orchestrator?.instanceId ? `${orchestrator.url}/status` : undefined;
}

runFlagsCli(HELP, FLAGS, async (flags) => {
  const url = flags.url ?? (await recordedUrl(flags.file ?? DEFAULT_FILE)) ?? DEFAULT_URL;
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) {
    throw new UsageError(`--url: expected an http:// or https:// URL; received ${JSON.stringify(url)}`);
  }
  // From the environment, never a flag: a flag would show in `ps`.
  const { state, source } = await readStatus(url, flags.file ?? DEFAULT_FILE, process.env.ORCHESTRATOR_KEY || undefined);
  process.stdout.write(flags.json ? `${JSON.stringify(state, null, 2)}\n` : formatStatus(state, source));
  return 0;
});

import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem, type } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { runFlagsCli } from '../../common/src/cli.js';
import { intFrom, loadConfig } from '../../common/src/config-loader.js';
import { freeBasePort } from '../../common/src/free-ports.js';
import { createLogger } from '../../common/src/logger.js';
import { REPO_ROOT } from '../../common/src/paths.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import type { Provider } from '../../provisioning/src/provider.js';
import { fetchLiveStatus } from '../../status/src/live-status.js';
import type { StateFile } from '../../status/src/schema.js';
import { driftOf, driftWindows } from './drift.js';
import { sampleProcess, type ProcessSample } from './process-metrics.js';
import { formatSoakReport, notModelAnswers, SERIES, type Kill, type SoakResult } from './soak-report.js';
import { runSteadyLoad } from './steady-load.js';
import { startCompiledOrchestrator, type Target } from './targets.js';
import { pollWithin } from '../../common/src/poll-until.js';

const HELP = `Usage: npm run bench:soak -- [options]

Soak benchmark (not a CI test): provisions a local cluster (2 workers x 2 containers, local
processes) in a temp folder, starts the compiled orchestrator over it, keeps a steady load on it,
SIGKILLs a random container process every --kill-every-s seconds, samples the orchestrator's
/metrics, and writes SOAK.md, soak.svg and soak.json to --out. Fails (exit 1) when a request did
not get the model's answer (an error status such as 502, 503 or 504, or no answer) or a killed
container was not replaced.

Options:
  --duration-s <s>      how long the load runs                  default 600
  --kill-every-s <s>    seconds between two container kills     default 20
  --concurrency <n>     requests in flight at once              default 32
  --out <dir>           folder the report goes to               default docs
  --help                show this text
`;

const FLAGS = {
  'duration-s': { type: 'string' },
  'kill-every-s': { type: 'string' },
  concurrency: { type: 'string' },
  out: { type: 'string' },
} as const;

const soakOptionsSchema = z.object({
  /** How long the load runs, in s. @default 600 */
  durationS: intFrom(20, 86_400).default(600),
  /** Seconds between two container kills. @default 20 */
  killEveryS: intFrom(1, 3_600).default(20),
  /** Requests in flight at once. @default 32 */
  concurrency: intFrom(1, 1_000).default(32),
  /** Folder of SOAK.md, soak.svg and soak.json. @default 'docs' */
  out: z.string().min(1).default('docs'),
});
type SoakOptions = z.infer<typeof soakOptionsSchema>;

const WORKERS = 2;
const CONTAINERS_PER_WORKER = 2;
/** Simulated inference time per request (WORK_MS): a timer, so the two cores stay free for the orchestrator. */
const WORK_MS = 5;
const THREADS = 2;
const SAMPLE_EVERY_MS = 5_000;
/** A progress line every 30 s. */
const PROGRESS_EVERY_SAMPLES = 6;
const SLICE_MS = 10_000;
/** Longest a killed container's slot may take to take requests again before it counts as not replaced. */
const REPLACEMENT_WAIT_MS = 60_000;
const CLUSTER = 'soak';

/** Resolves at `at` (performance.now() time), or early when `signal` aborts; true if `at` was reached. */
async function until(at: number, signal: AbortSignal): Promise<boolean> {
  const ms = at - performance.now();
  if (ms > 0) await sleep(ms, undefined, { signal }).catch(() => {});
  return !signal.aborted;
}

const liveStatus = (baseUrl: string): Promise<StateFile> => fetchLiveStatus(`${baseUrl}/status`, 10_000);

/**
 * The orchestrator's restartBackoffResetMs here: half a kill interval, so that each kill is one
 * failure of a slot that had been serving, not a step of a crash loop (SOAK.md says why the
 * 10-minute default does not fit random kills every few seconds).
 */
const backoffResetMs = (options: SoakOptions): number => (options.killEveryS * 1000) / 2;

const inRotation = (state: string): boolean => state === 'free' || state === 'busy';

/** SIGKILL one container process in rotation, picked at random, and wait for its slot to take requests again with a new one; null when none was in rotation. */
async function killOne(baseUrl: string, atS: number): Promise<Kill | null> {
  const candidates = (await liveStatus(baseUrl)).containers.filter((c) => c.runtimeId !== null && inRotation(c.state));
  const victim = candidates[Math.floor(Math.random() * candidates.length)];
  if (!victim) return null;
  const pid = Number(victim.runtimeId);
  process.kill(pid, 'SIGKILL');
  const killedAt = performance.now();
  const backAfterMs = await pollWithin(
    async () => {
      const slot = (await liveStatus(baseUrl)).containers.find((c) => c.id === victim.id);
      return slot && slot.runtimeId !== victim.runtimeId && inRotation(slot.state) ? Math.round(performance.now() - killedAt) : undefined;
    },
    { timeoutMs: REPLACEMENT_WAIT_MS, intervalMs: 100 },
  );
  return { atS, container: victim.id, pid, backInRotationAfterMs: backAfterMs ?? null };
}

/** What one soak run set up, so that cleanup undoes exactly that, once, whenever it is called. */
class SoakRun {
  #dir: string | undefined;
  #cluster: { config: ProvisionConfig; provider: Provider } | undefined;
  #orchestrator: Target | undefined;
  readonly #provisioning = new AbortController();
  #cleaning: Promise<void> | undefined;

  async run(options: SoakOptions, command: string, revision: string): Promise<SoakResult> {
    this.#dir = await mkdtemp(join(tmpdir(), 'soak-'));
    const statePath = join(this.#dir, 'state.json');
    // Stride = containers per worker: the ports checked free are exactly the workers' ranges.
    const offsets = Array.from({ length: WORKERS * CONTAINERS_PER_WORKER }, (_, i) => i);
    const config = loadProvisionConfig({
      env: {},
      flags: {
        cluster: CLUSTER,
        statePath,
        basePort: await freeBasePort(offsets),
        portStride: CONTAINERS_PER_WORKER,
        workers: WORKERS,
        containersPerWorker: CONTAINERS_PER_WORKER,
        workMs: WORK_MS,
        logLevel: 'warn',
      },
    });
    // Compiled, like the containers the orchestrator (running from dist/) starts as replacements.
    const provider = createProvider(config, createLogger('provisioning', config.logLevel, process.stderr), {
      command: [process.execPath, join(REPO_ROOT, 'dist/worker/src/main.js')],
    });
    this.#cluster = { config, provider };
    await provisionCluster(config, {
      provider,
      signal: this.#provisioning.signal,
      onProgress: (healthy, total) => say(`${healthy}/${total} containers healthy`),
    });
    this.#orchestrator = await startCompiledOrchestrator(statePath, 'orchestrator', ['--restart-backoff-reset-ms', String(backoffResetMs(options))]);
    const baseUrl = new URL(this.#orchestrator.url).origin;
    say(`orchestrator pid ${this.#orchestrator.pid} at ${baseUrl}; load for ${options.durationS} s at concurrency ${options.concurrency}, a kill every ${options.killEveryS} s`);

    const loadOver = new AbortController();
    const started = performance.now();
    /** Seconds since the load started, to a tenth. */
    const nowS = (): number => Math.round((performance.now() - started) / 100) / 10;
    let requestsDone = 0;
    let fullLoad = false;
    const samples: ProcessSample[] = [];
    const kills: Kill[] = [];
    const sampling = async (): Promise<void> => {
      for (let k = 0; await until(started + k * SAMPLE_EVERY_MS, loadOver.signal); k++) {
        // Each client connection is an fd and a handle: sampled between two slices, they would count
        // the load generator's reconnection, not the orchestrator's state. So sample at full load only.
        while (!fullLoad && !loadOver.signal.aborted) await sleep(10);
        if (loadOver.signal.aborted) return;
        const t = nowS();
        const sample = await sampleProcess(baseUrl, t).catch((error: unknown) => {
          throw new Error(`sampling the orchestrator at ${t} s: ${(error as Error).message}`, { cause: error });
        });
        samples.push(sample);
        if (k % PROGRESS_EVERY_SAMPLES === 0) {
          say(`${fmtS(sample.t)}/${options.durationS} s  ${requestsDone} requests  rss ${(sample.rssBytes / 1e6).toFixed(1)} MB  heap ${(sample.heapUsedBytes / 1e6).toFixed(1)} MB  fds ${sample.openFds}  handles ${sample.activeHandles}`);
        }
      }
    };
    const killEveryMs = options.killEveryS * 1000;
    const killing = async (): Promise<void> => {
      for (let k = 1; await until(started + k * killEveryMs, loadOver.signal); ) {
        const kill = await killOne(baseUrl, nowS());
        if (kill) kills.push(kill);
        say(
          !kill
            ? `${fmtS(nowS())} s: no container in rotation to kill`
            : `${fmtS(kill.atS)} s: killed ${kill.container} (pid ${kill.pid}); ${kill.backInRotationAfterMs === null ? 'NOT back in rotation' : `back in rotation after ${kill.backInRotationAfterMs} ms`}`,
        );
        // The next kill time ahead: one that passed while this replacement was awaited is skipped, not made up.
        k = Math.floor((performance.now() - started) / killEveryMs) + 1;
      }
    };
    // A failing sampler or killer ends the load too, rather than leaving it running unobserved.
    const stopLoadOnError = (error: unknown): never => {
      loadOver.abort();
      throw error;
    };
    const [load] = await Promise.all([
      runSteadyLoad(
        {
          url: this.#orchestrator.url,
          durationMs: options.durationS * 1000,
          concurrency: options.concurrency,
          threads: THREADS,
          body: '{"text":"steady soak load"}',
          sliceMs: SLICE_MS,
          timeoutMs: 30_000,
          signal: loadOver.signal,
        },
        { onProgress: (done) => (requestsDone = done), onFullLoad: (full) => (fullLoad = full) },
      ).finally(() => loadOver.abort()),
      sampling().catch(stopLoadOnError),
      killing().catch(stopLoadOnError),
    ]);

    const final = await liveStatus(baseUrl);
    const windows = driftWindows(samples.at(-1)?.t ?? 0);
    return {
      date: new Date().toISOString(),
      command,
      revision,
      machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, os: `${type()} ${release()}`, memoryGiB: totalmem() / 2 ** 30 },
      setup: {
        workers: WORKERS,
        containersPerWorker: CONTAINERS_PER_WORKER,
        workMs: WORK_MS,
        concurrency: options.concurrency,
        threads: THREADS,
        durationS: options.durationS,
        killEveryS: options.killEveryS,
        restartBackoffResetMs: backoffResetMs(options),
        sampleEveryS: SAMPLE_EVERY_MS / 1000,
        sliceS: SLICE_MS / 1000,
      },
      load,
      lost: notModelAnswers(load),
      counters: final.counters,
      kills,
      replacements: final.containers.reduce((n, c) => n + c.restarts, 0),
      windows,
      drift: SERIES.map((s) => ({ series: s.name, unit: s.unit, ...driftOf(samples, s.value, windows) })),
      samples,
    };
  }

  /** Stop the orchestrator (SIGTERM), tear the cluster down with the provisioning code, delete the temp folder. Idempotent. */
  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      this.#provisioning.abort();
      await this.#orchestrator?.stop();
      if (this.#cluster) {
        const { config, provider } = this.#cluster;
        const report = await teardownCluster(config, { provider }).catch((error: unknown) => {
          process.stderr.write(`warning: teardown failed: ${(error as Error).message}\n`);
          return null;
        });
        if (report?.unknown.length) process.stderr.write(`warning: teardown left containers it could not prove were its own: ${report.unknown.join(', ')}\n`);
      }
      if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
    })();
    return this.#cleaning;
  }
}

const say = (line: string): void => void process.stderr.write(`[soak] ${line}\n`);
const fmtS = (s: number): string => s.toFixed(0).padStart(4);

/** `commit abc1234`, and whether the folders `npm run build` compiles differed from it. */
async function revision(): Promise<string> {
  const git = (...args: string[]): string => execFileSync('git', args, { encoding: 'utf8' }).trim();
  const built = (JSON.parse(await readFile('tsconfig.build.json', 'utf8')) as { include: string[] }).include;
  return `commit ${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', ...built) ? ' with uncommitted changes to the built sources' : ''}`;
}

function summary(r: SoakResult): string {
  const codes = Object.entries(r.load.statusCodes).map(([code, n]) => `${n} × ${code}`).join(', ') || 'none';
  return [
    `requests ${r.load.requests} (${codes}), lost (not the model's answer) ${r.lost}, redispatched ${r.counters?.redispatched ?? 'unknown'}`,
    `kills ${r.kills.length}, replacements ${r.replacements}, not back in rotation ${r.kills.filter((k) => k.backInRotationAfterMs === null).length}`,
    ...r.drift.map(
      (d) =>
        `${d.series.padEnd(15)} first ${d.firstMedian.toFixed(1)}  last ${d.lastMedian.toFixed(1)}${d.unit ? ` ${d.unit}` : ''}  slope ${d.slopePerMin.toFixed(3)}/min (${(d.relativeSlopePerMin * 100).toFixed(2)}%)  ${d.flat ? 'flat' : 'NOT FLAT'}`,
    ),
    '',
  ].join('\n');
}

runFlagsCli(HELP, FLAGS, async (flags) => {
  const options = loadConfig(soakOptionsSchema, {
    flags: { durationS: flags['duration-s'], killEveryS: flags['kill-every-s'], concurrency: flags.concurrency, out: flags.out },
  });
  // The orchestrator is measured as `npm start` runs it: compiled.
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const builtFrom = await revision();
  const soak = new SoakRun();
  // Interrupted, it still stops every process it started.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void soak.cleanup().finally(() => process.exit(130)));
  }
  try {
    const command = ['npm run bench:soak --', ...process.argv.slice(2)].join(' ').replace(/ --$/, '');
    const result = await soak.run(options, command, builtFrom);
    const { markdown, svg } = formatSoakReport(result);
    await mkdir(options.out, { recursive: true });
    await writeFile(join(options.out, 'soak.json'), `${JSON.stringify(result, null, 2)}\n`);
    await writeFile(join(options.out, 'soak.svg'), svg);
    await writeFile(join(options.out, 'SOAK.md'), markdown);
    process.stdout.write(summary(result));
    const unreplaced = result.kills.filter((k) => k.backInRotationAfterMs === null).length;
    if (result.lost > 0 || unreplaced > 0) throw new Error(`${result.lost} requests lost, ${unreplaced} killed containers not replaced (see ${join(options.out, 'SOAK.md')})`);
    return 0;
  } finally {
    await soak.cleanup();
  }
});

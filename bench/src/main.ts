import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFlagsCli } from '../../common/src/cli.js';
import { UsageError } from '../../common/src/errors.js';
import { benchModel, MODEL_IMAGE, type Stoppable } from './model-bench.js';
import { buildModelImage } from './model-image.js';
import { benchInstructions } from './instructions.js';
import { benchMachines } from './machines.js';
import { benchProxies } from './proxies.js';
import { BENCH_RESULT_VERSION, formatReport, parseBenchResult, type BenchResult } from './report.js';
import { benchScale } from './scale.js';
import { ensureWrk, wrkVersion } from './wrk.js';

const ROUNDS = 3;
/** runLoad's worker threads, for the burst and the model image. */
const THREADS = 2;

const HELP = `Usage: npm run bench [-- --only scale|machines]

Runs every scenario and writes docs/BENCHMARKS.md, docs/benchmarks.json and the charts (about 25 minutes).
  --only scale     run the scale scenario alone (under 2 minutes) and put its results into the
                   docs/benchmarks.json written last, then write the docs from it
  --only machines  the same for the machine autoscaler on the Docker engine (a few minutes)
`;

/** The scenarios --only runs alone. */
const ALONE = ['scale', 'machines'];

/** One scenario run alone, its result put into the docs/benchmarks.json written last (read first: a stale one fails at once). */
async function alone(only: string, dir: string, track: (running: Stoppable) => void): Promise<BenchResult> {
  const last = parseBenchResult(await readFile('docs/benchmarks.json', 'utf8'));
  if (only === 'scale') return { ...last, scale: await benchScale({ dir, track }) };
  execFileSync('bash', ['scripts/docker-engine.sh'], { stdio: 'inherit' });
  return { ...last, machines: await benchMachines({ dir, track }) };
}

/** Every scenario: the proxies on one 8-backend farm, then the scale scenario, the machine autoscaler and the model image. */
async function everything(dir: string, track: (running: Stoppable) => void): Promise<BenchResult> {
  execFileSync('bash', ['scripts/haproxy.sh'], { stdio: 'inherit' });
  // Built before anything is measured: a machine that cannot build it fails in seconds, not after the scenarios.
  execFileSync('bash', ['scripts/docker-engine.sh'], { stdio: 'inherit' });
  const modelImage = buildModelImage(MODEL_IMAGE);
  const proxies = await benchProxies({ dir, track, rounds: ROUNDS, threads: THREADS });
  // The scale scenario and the model image have the cores to themselves: benchProxies stopped all it started.
  const instructions = await benchInstructions({ dir, track });
  const scale = await benchScale({ dir, track });
  const machines = await benchMachines({ dir, track });
  const model = await benchModel({ dir, image: modelImage, rounds: ROUNDS, threads: THREADS, track });
  return {
    date: new Date().toISOString(),
    version: BENCH_RESULT_VERSION,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, haproxy: execFileSync('haproxy', ['-v']).toString().split('\n')[0]!.trim(), wrk: wrkVersion() },
    rounds: ROUNDS,
    ...proxies,
    instructions,
    model,
    scale,
    machines,
  };
}

runFlagsCli(HELP, { only: { type: 'string' } }, async ({ only }) => {
  if (only !== undefined && !ALONE.includes(only)) throw new UsageError(`--only takes ${ALONE.map((k) => `"${k}"`).join(' or ')}, not "${only}"`);
  ensureWrk();
  // The orchestrator is measured as \`npm start\` runs it: compiled.
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const dir = await mkdtemp(join(tmpdir(), 'bench-'));
  const running: Stoppable[] = [];
  const track = (r: Stoppable): void => void running.push(r);
  const cleanup = async (): Promise<void> => {
    for (const r of running.splice(0).reverse()) await r.stop();
    await rm(dir, { recursive: true, force: true });
  };
  // Interrupted, it still stops every process it started.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  }
  try {
    const result = only ? await alone(only, dir, track) : await everything(dir, track);
    await mkdir('docs', { recursive: true });
    const { markdown, svg, modelSvg } = formatReport(result);
    await writeFile('docs/benchmarks.json', `${JSON.stringify(result, null, 2)}\n`);
    await writeFile('docs/benchmarks.svg', svg);
    await writeFile('docs/benchmarks-model.svg', modelSvg);
    await writeFile('docs/BENCHMARKS.md', markdown);
    process.stdout.write(markdown);
    return 0;
  } finally {
    await cleanup();
  }
});

import { runLoad } from '../../load/src/run-load.js';
import { predictOnce, readHoldout, startModelContainer, type ModelImage } from './model-image.js';
import type { ModelMeasurement, ModelResult } from './report.js';
import { freePort, startHaproxy, startOrchestrator, type Target } from './targets.js';

/** The tag `npm run build:image -- flask-model` gives it: the bench measures the image a user builds. */
export const MODEL_IMAGE = 'flask-model:latest';
/** What examples/flask-model serves; the orchestrator maps /new_request to it. */
const CONTRACT = { predictPath: '/predict', healthPath: '/healthz' };

/** Concurrency 1: the cost per request with no queueing; 16: the queueing in front of one container. */
const LEVELS = [
  { concurrency: 1, requests: 600 },
  { concurrency: 16, requests: 1_200 },
];
const WARM_UP_REQUESTS = 200;
/** Sequential answers whose median `inference_ms` is the model's own time. */
const INFERENCE_SAMPLES = 21;

/** Something the bench's cleanup stops, even when the bench fails or is interrupted. */
export interface Stoppable {
  stop(): Promise<void>;
}

export interface ModelBenchOptions {
  /** Where the orchestrator's state file goes. */
  dir: string;
  rounds: number;
  threads: number;
  /** The image to run (buildModelImage). */
  image: ModelImage;
  /** Called with each container and process as soon as it exists, for the bench's cleanup. */
  track(running: Stoppable): void;
}

/** One load run; every request must answer 200. */
async function measure(target: Target, concurrency: number, requests: number, body: string, threads: number): Promise<ModelMeasurement> {
  const result = await runLoad({ url: target.url, requests, threads, concurrency, method: 'POST', body, timeoutMs: 120_000 });
  if (result.statusCodes['200'] !== requests) {
    throw new Error(`model image, ${target.name}, C = ${concurrency}: ${requests - (result.statusCodes['200'] ?? 0)} of ${requests} requests did not answer 200 (${JSON.stringify(result.statusCodes)} ${JSON.stringify(result.errors)})`);
  }
  const { p50, p90, p99 } = result.latencyMs!;
  return { target: target.name, concurrency, throughputRps: result.throughputRps, latencyMs: { p50, p90, p99 } };
}

/**
 * The example Python model image (examples/flask-model, built), one container of it, called directly,
 * through a compiled orchestrator (build first) and through HAProxy at the same concurrency, A B C over `rounds`
 * rounds after a warm-up, with one real held-out digit as the body.
 */
export async function benchModel(options: ModelBenchOptions): Promise<ModelResult> {
  const { image } = options;
  const holdout = await readHoldout(image.tag);
  const body = JSON.stringify({ pixels: holdout.features[0] });
  const port = await freePort();
  const { container, healthy } = startModelContainer(image.tag, `bench-flask-model-${process.pid}`, port);
  options.track(container);
  await healthy;
  const orchestrator = await startOrchestrator(options.dir, [port], 'orchestrator (model)', CONTRACT);
  options.track(orchestrator);
  // The industrial queueing proxy in front of the same container: what any proxy with one request per server pays.
  const haproxy = await startHaproxy(options.dir, [port], 'haproxy (model)', CONTRACT);
  options.track(haproxy);
  const direct: Target = { name: 'direct', url: `${container.origin}${CONTRACT.predictPath}`, pid: 0, stop: async () => {} };
  const targets = [direct, { ...orchestrator, name: 'orchestrator' }, { ...haproxy, name: 'haproxy' }];

  // The same digit, the same prediction, whichever way it goes.
  const answers = [];
  for (let i = 0; i < INFERENCE_SAMPLES; i++) answers.push(await predictOnce(direct.url, body));
  for (const proxy of targets.slice(1)) {
    const through = await predictOnce(proxy.url, body);
    if (through.prediction !== answers[0]!.prediction) throw new Error(`model image: ${proxy.name} answered ${through.prediction} where the container answered ${answers[0]!.prediction}`);
  }
  const inference = answers.map((a) => a.inference_ms).sort((a, b) => a - b);

  const runs: ModelMeasurement[] = [];
  for (const level of LEVELS) {
    for (const target of targets) await measure(target, level.concurrency, WARM_UP_REQUESTS, body, options.threads);
    for (let round = 0; round < options.rounds; round++) {
      for (const target of targets) {
        const m = await measure(target, level.concurrency, level.requests, body, options.threads);
        runs.push(m);
        process.stderr.write(`[bench] model image, C = ${level.concurrency}  ${m.target.padEnd(12)} ${m.throughputRps.toFixed(0).padStart(6)} req/s  p50 ${m.latencyMs.p50.toFixed(2)} ms\n`);
      }
    }
  }
  return {
    image: image.tag,
    imageId: image.id,
    base: image.base,
    model: holdout.model,
    sample: { label: holdout.labels[0]!, prediction: answers[0]!.prediction },
    inferenceMs: inference[Math.floor(inference.length / 2)]!,
    requests: Object.fromEntries(LEVELS.map((l) => [String(l.concurrency), l.requests])),
    runs,
  };
}

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { request } from 'undici';
import { pollWithin } from '../../common/src/poll-until.js';

const run = promisify(execFile);

/** The example Python model image (examples/flask-model), as scripts/build-image.sh built it. */
export interface ModelImage {
  tag: string;
  /** Short image id, 12 hex digits. */
  id: string;
  /** The base image it was built on: the official Python image, or one made from Debian's packages. */
  base: string;
}

/** What examples/flask-model/train.py saved in the image (/app/holdout.json): the digits it did not train on. */
export interface Holdout {
  /** Name and version the server reports, e.g. `digits-logistic-regression@1`. */
  model: string;
  /** Accuracy on these samples, measured when the image was built. */
  accuracy: number;
  /** One 8x8 image per sample, 64 pixel values from 0 to 16. */
  features: number[][];
  labels: number[];
}

/** The answer of `POST /predict` for one image. */
export interface PredictAnswer {
  prediction: number;
  /** Time the model itself took, in ms, as the app measured it. */
  inference_ms: number;
}

/** Build (or, cached, just re-tag) the model image as `tag`; the build's progress goes to stderr. */
export function buildModelImage(tag: string): ModelImage {
  const out = execFileSync('bash', ['scripts/build-image.sh', 'flask-model'], {
    env: { ...process.env, FLASK_MODEL_IMAGE: tag },
    stdio: ['ignore', 'pipe', 'inherit'],
  }).toString();
  // The script's last line: `<tag> <id> <size> (base <base>)`.
  const last = out.trim().split('\n').at(-1) ?? '';
  const match = /^(\S+) (\S+) .* \(base (\S+)\)$/.exec(last);
  if (!match) throw new Error(`scripts/build-image.sh flask-model printed no image line (got ${JSON.stringify(last)})`);
  return { tag: match[1]!, id: match[2]!, base: match[3]! };
}

/** The held-out digits, read out of the image (no container kept, no network). */
export async function readHoldout(image: string): Promise<Holdout> {
  const { stdout } = await run('docker', ['run', '--rm', '--network', 'none', '--entrypoint', 'cat', image, '/app/holdout.json'], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as Holdout;
}

/** One container of the model image, on 127.0.0.1 with host networking, removed by `stop()`. */
export interface ModelContainer {
  name: string;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** Remove it (forced); idempotent, and safe when it never started. */
  stop(): Promise<void>;
}

/** The container's last log lines, for an error message. */
async function logTail(name: string): Promise<string> {
  const logs = await run('docker', ['logs', '--tail', '5', name]).catch(() => ({ stdout: '', stderr: '' }));
  return `${logs.stdout}${logs.stderr}`.trim().split('\n').join(' | ');
}

/**
 * `docker run -d` the model image as container `name` listening on 127.0.0.1:`port`, and wait for
 * its `GET /healthz` to answer 200. Its `stop()` is returned before the wait so a caller can track
 * it at once: an interrupted or failed start still removes the container.
 */
export function startModelContainer(image: string, name: string, port: number): { container: ModelContainer; healthy: Promise<void> } {
  const origin = `http://127.0.0.1:${port}`;
  let removal: Promise<void> | undefined;
  const started = run('docker', ['run', '-d', '--name', name, '--network', 'host', '-e', 'HOST=127.0.0.1', '-e', `PORT=${port}`, '-e', `CONTAINER_ID=${name}`, image]);
  const container: ModelContainer = {
    name,
    origin,
    stop: () =>
      (removal ??= started.then(
        // `docker rm -f` of a container already gone fails: nothing is left to remove then.
        () => run('docker', ['rm', '-f', name]).then(() => undefined, () => undefined),
        () => undefined,
      )),
  };
  const healthy = (async () => {
    await started;
    const answered = await pollWithin(
      async () => {
        const ok = await request(`${origin}/healthz`).then(
          async (r) => {
            await r.body.dump();
            return r.statusCode === 200;
          },
          () => false,
        );
        if (ok) return true;
        const { stdout: running } = await run('docker', ['inspect', '-f', '{{.State.Running}}', name]);
        if (running.trim() !== 'true') throw new Error(`model container ${name} exited before answering ${origin}/healthz: ${await logTail(name)}`);
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    // The log tail is read only once the wait is over, so it shows why.
    if (!answered) throw new Error(`model container ${name} did not answer ${origin}/healthz within 60 s: ${await logTail(name)}`);
  })();
  return { container, healthy };
}

/** One POST of `body` to `url` (the container's /predict, or an orchestrator's /new_request), checked to be a prediction. */
export async function predictOnce(url: string, body: string): Promise<PredictAnswer> {
  const response = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`${url} answered ${response.statusCode}: ${text.slice(0, 200)}`);
  const answer = JSON.parse(text) as PredictAnswer;
  if (!Number.isInteger(answer.prediction) || typeof answer.inference_ms !== 'number') throw new Error(`${url} answered no prediction: ${text.slice(0, 200)}`);
  return answer;
}

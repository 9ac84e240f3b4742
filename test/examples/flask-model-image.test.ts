import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFlaskModelImage,
  ENGINE_SETUP_TIMEOUT_MS,
  ensureDockerEngine,
  inspect,
  poll,
  removeDockerObjects,
  runOk,
  uniqueName,
} from '../helpers/docker.js';
import { ACCURACY_FLOOR, readHoldout, runFlaskModel, type Holdout, type PredictAnswer } from '../helpers/flask-model.js';
import { getJson, postJson, postRaw } from '../worker/helpers.js';
import { freeBasePort } from '../../common/src/free-ports.js';

// Real engine, real image (trained while it builds): built once for the file, removed afterwards
// with every container it ran.
const image = `flask-model:${uniqueName('test-image')}`;
const plain = uniqueName('flask-model');
const crashable = uniqueName('flask-model-crash');
let plainUrl: string;
let crashableUrl: string;
let holdout: Holdout;

async function healthStatus(name: string, wanted: string): Promise<string> {
  return poll(async () => {
    const status = (await inspect(name)).State.Health?.Status as string | undefined;
    return status === wanted ? status : undefined;
  }, `${name} to turn ${wanted}`);
}

beforeAll(async () => {
  await ensureDockerEngine();
  await buildFlaskModelImage(image);
  holdout = await readHoldout(image);
  const base = await freeBasePort([0, 1]);
  plainUrl = `http://127.0.0.1:${base}`;
  crashableUrl = `http://127.0.0.1:${base + 1}`;
  await runFlaskModel(image, plain, base);
  // Docker's own probe every second here, so that the crash shows in its status within the test.
  await runFlaskModel(image, crashable, base + 1, {
    env: { ENABLE_CRASH_API: '1', WORK_MS: '300' },
    dockerArgs: ['--health-interval', '1s', '--health-retries', '1'],
  });
}, ENGINE_SETUP_TIMEOUT_MS + 600_000);

afterAll(async () => {
  await removeDockerObjects([plain, crashable], [image]);
}, 60_000);

describe('examples/flask-model image', () => {
  it("turns healthy through its own HEALTHCHECK and reports no identity on /healthz", async () => {
    const { Config } = await inspect('--type', 'image', image);
    expect(Config.Healthcheck.Test.slice(0, 2)).toEqual(['CMD', 'python3']);
    expect(Config.User).toBe('10001:10001');

    // The image's interval, not one set for the test: what compose and the orchestrator's Docker driver get.
    expect(await healthStatus(plain, 'healthy')).toBe('healthy');
    const health = await getJson(`${plainUrl}/healthz`);
    expect(health).toEqual({ status: 200, body: { status: 'ok', model: holdout.model, served: 0 } });
    expect((await getJson(`${plainUrl}/`)).body.routes).toEqual(['GET /', 'GET /healthz', 'POST /predict']);
  }, 40_000);

  it(`predicts the held-out digits with an accuracy of at least ${ACCURACY_FLOOR}`, async () => {
    let correct = 0;
    for (const [i, pixels] of holdout.features.entries()) {
      const { status, body } = (await postJson(`${plainUrl}/predict`, { pixels })) as { status: number; body: PredictAnswer };
      expect(status).toBe(200);
      if (body.prediction === holdout.labels[i]) correct++;
      if (i === 0) {
        expect(body).toMatchObject({ model: holdout.model, container: plain, inference_ms: expect.any(Number) });
        expect(body.probabilities).toHaveLength(10);
        expect(body.probabilities.reduce((sum, p) => sum + p, 0)).toBeCloseTo(1, 4);
        expect(body.probabilities.indexOf(Math.max(...body.probabilities))).toBe(body.prediction);
      }
    }
    const accuracy = correct / holdout.labels.length;
    console.log(`flask-model ${holdout.model}: held-out accuracy ${accuracy.toFixed(4)} (${correct}/${holdout.labels.length}) over HTTP`);
    expect(accuracy).toBeGreaterThanOrEqual(ACCURACY_FLOOR);
    // The served model is the one train.py scored when the image was built.
    expect(accuracy).toBeCloseTo(holdout.accuracy, 10);

    const batch = await postJson(`${plainUrl}/predict`, { instances: holdout.features.slice(0, 20) });
    expect(batch.status).toBe(200);
    expect(batch.body.predictions).toHaveLength(20);
    expect((await getJson(`${plainUrl}/healthz`)).body.served).toBe(holdout.labels.length + 1);
  }, 60_000);

  it.each([
    ['a body that is not JSON', '{"pixels": ', 'application/json', 'INVALID_JSON'],
    ['a body that is not application/json', '{"pixels": []}', 'text/plain', 'INVALID_INPUT'],
    ['too few pixels', JSON.stringify({ pixels: [0, 1, 2] }), 'application/json', 'INVALID_INPUT'],
    ['a pixel above 16', JSON.stringify({ pixels: [...Array(63).fill(0), 17] }), 'application/json', 'INVALID_INPUT'],
    ['neither pixels nor instances', JSON.stringify({ text: 'seven' }), 'application/json', 'INVALID_INPUT'],
  ])('answers %s with 400 and a JSON error', async (_what, body, contentType, code) => {
    expect(await postRaw(`${plainUrl}/predict`, body, contentType)).toEqual({ status: 400, body: { error: code, message: expect.any(String) } });
  });

  it('has no crash API unless enabled', async () => {
    expect((await postJson(`${plainUrl}/api/v1/_crash`, {})).status).toBe(404);
    expect((await getJson(`${plainUrl}/healthz`)).status).toBe(200);
  });

  it('computes one request at a time, each taking at least WORK_MS', async () => {
    const pixels = holdout.features[0];
    const started = performance.now();
    const answers = await Promise.all([0, 1].map(() => postJson(`${crashableUrl}/predict`, { pixels })));
    const elapsedMs = performance.now() - started;
    for (const answer of answers) expect(answer.body.inference_ms).toBeGreaterThanOrEqual(300);
    // One sync worker: the second waited for the first.
    expect(elapsedMs).toBeGreaterThanOrEqual(600);
  });

  it('once crashed through its crash API, answers 500 on every route and Docker marks it unhealthy', async () => {
    expect((await getJson(`${crashableUrl}/`)).body.routes).toContain('POST /api/v1/_crash');
    expect(await healthStatus(crashable, 'healthy')).toBe('healthy');

    expect(await postJson(`${crashableUrl}/api/v1/_crash`, {})).toEqual({ status: 200, body: { status: 'crashed', container: crashable } });
    expect(await getJson(`${crashableUrl}/healthz`)).toEqual({ status: 500, body: { error: 'CRASHED', message: expect.any(String) } });
    expect((await postJson(`${crashableUrl}/predict`, { pixels: holdout.features[0] })).status).toBe(500);
    expect(await healthStatus(crashable, 'unhealthy')).toBe('unhealthy');
  }, 40_000);

  it('stops promptly and cleanly on docker stop', async () => {
    const started = performance.now();
    await runOk('docker', ['stop', '--time', '10', plain]);
    const elapsedMs = performance.now() - started;
    const { State } = await inspect(plain);
    expect(State.Running).toBe(false);
    // gunicorn's graceful exit, not Docker's SIGKILL after the 10 s grace period.
    expect([0, 143]).toContain(State.ExitCode);
    expect(elapsedMs).toBeLessThan(5_000);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { MAX_TEXT_CHARS } from '../../worker/src/app.js';
import { getJson, postJson, postRaw, workerPool } from './helpers.js';

const workers = workerPool();
afterEach(() => workers.closeAll());

describe('POST /run_model', () => {
  it('answers a prediction with model, container and inference time', async () => {
    const { url } = await workers.start();
    const { status, body } = await postJson(`${url}/run_model`, { text: 'What a great, happy day!' });
    expect(status).toBe(200);
    expect(body).toEqual({
      prediction: {
        label: 'positive',
        scores: { pos: expect.any(Number), neu: expect.any(Number), neg: expect.any(Number), compound: expect.any(Number) },
      },
      model: expect.stringMatching(/^vader-sentiment@/),
      container: 'test-worker',
      inference_ms: expect.any(Number),
    });
  });

  it('labels a negative sentence negative', async () => {
    const { url } = await workers.start();
    const { body } = await postJson(`${url}/run_model`, { text: 'This is awful and I am very sad.' });
    expect(body.prediction.label).toBe('negative');
  });

  it.each([
    ['missing text', {}],
    ['non-string text', { text: 42 }],
    ['empty text', { text: '' }],
    ['a JSON array', ['hello']],
    ['over-long text', { text: 'a'.repeat(MAX_TEXT_CHARS + 1) }],
  ])('rejects %s with 400 INVALID_INPUT', async (_case, payload) => {
    const { url } = await workers.start();
    const { status, body } = await postJson(`${url}/run_model`, payload);
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'INVALID_INPUT', message: expect.any(String) });
  });

  it('rejects malformed JSON with 400 INVALID_JSON', async () => {
    const { url } = await workers.start();
    const { status, body } = await postRaw(`${url}/run_model`, '{"text": "unterminated');
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'INVALID_JSON', message: expect.any(String) });
  });

  it('rejects a body that is not sent as JSON with 400 INVALID_INPUT', async () => {
    const { url } = await workers.start();
    const { status, body } = await postRaw(`${url}/run_model`, '{"text": "hello"}', 'text/plain');
    expect(status).toBe(400);
    expect(body.error).toBe('INVALID_INPUT');
  });

  it('rejects a body over maxBodyBytes with 413', async () => {
    const { url } = await workers.start({ maxBodyBytes: 1024 });
    const { status, body } = await postJson(`${url}/run_model`, { text: 'a'.repeat(4096) });
    expect(status).toBe(413);
    expect(body).toEqual({ error: 'PAYLOAD_TOO_LARGE', message: expect.any(String) });
  });

  it('waits workMs on a timer, so /health still answers meanwhile', async () => {
    const { url } = await workers.start({ workMs: 400 });
    const run = postJson(`${url}/run_model`, { text: 'fine' });
    await waitForInFlight(url, 1);

    const healthStartedAt = performance.now();
    const health = await getJson(`${url}/health`);
    expect(performance.now() - healthStartedAt).toBeLessThan(200);
    expect(health.body.inFlight).toBe(1);

    const { status, body } = await run;
    expect(status).toBe(200);
    // Timers may fire up to a millisecond early against performance.now().
    expect(body.inference_ms).toBeGreaterThanOrEqual(399);
  });
});

describe('GET /health', () => {
  it('reports status, identity, counters and uptime', async () => {
    let clockMs = 1_000;
    const { url } = await workers.start({}, { now: () => clockMs });
    clockMs += 2_500;
    const { status, body } = await getJson(`${url}/health`);
    expect(status).toBe(200);
    expect(body).toEqual({
      status: 'ok',
      container: 'test-worker',
      model: expect.stringMatching(/^vader-sentiment@/),
      served: 0,
      inFlight: 0,
      maxInFlight: 0,
      uptimeMs: 2_500,
    });
  });

  it('counts served requests and the highest concurrency seen', async () => {
    const { url } = await workers.start();
    await postJson(`${url}/run_model`, { text: 'one' });
    await postJson(`${url}/run_model`, { text: 'two' });
    const { body } = await getJson(`${url}/health`);
    expect(body).toMatchObject({ served: 2, inFlight: 0, maxInFlight: 1 });
  });

  it('sees two concurrent requests as maxInFlight 2', async () => {
    const { url } = await workers.start({ workMs: 300 });
    const answers = await Promise.all([postJson(`${url}/run_model`, { text: 'one' }), postJson(`${url}/run_model`, { text: 'two' })]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    const { body } = await getJson(`${url}/health`);
    expect(body).toMatchObject({ served: 2, inFlight: 0, maxInFlight: 2 });
  });

  it('does not count rejected requests as served', async () => {
    const { url } = await workers.start();
    await postJson(`${url}/run_model`, {});
    const { body } = await getJson(`${url}/health`);
    expect(body).toMatchObject({ served: 0, inFlight: 0 });
  });
});

describe('other routes', () => {
  it('describes the worker on GET /', async () => {
    const { url } = await workers.start();
    const { status, body } = await getJson(`${url}/`);
    expect(status).toBe(200);
    expect(body).toEqual({ name: 'inference-worker', model: expect.any(String), container: 'test-worker', routes: ['GET /', 'GET /health', 'POST /run_model'] });
  });

  it('answers unknown routes with 404 NOT_FOUND', async () => {
    const { url } = await workers.start();
    const { status, body } = await getJson(`${url}/nope`);
    expect(status).toBe(404);
    expect(body).toEqual({ error: 'NOT_FOUND', message: expect.any(String) });
  });

  it('answers a known path with the wrong method with 405', async () => {
    const { url } = await workers.start();
    const response = await fetch(`${url}/run_model`);
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
    expect(((await response.json()) as { error: string }).error).toBe('METHOD_NOT_ALLOWED');
  });
});

describe('POST /api/v1/_crash', () => {
  it('is an unknown route when the crash API is disabled', async () => {
    const { url } = await workers.start();
    const { status, body } = await postJson(`${url}/api/v1/_crash`, {});
    expect(status).toBe(404);
    expect(body.error).toBe('NOT_FOUND');
    expect((await getJson(`${url}/health`)).status).toBe(200);
  });

  it('makes every route answer 500 CRASHED once called', async () => {
    const { url } = await workers.start({ enableCrashApi: true });
    expect((await postJson(`${url}/run_model`, { text: 'ok' })).status).toBe(200);

    const crash = await postJson(`${url}/api/v1/_crash`, {});
    expect(crash).toEqual({ status: 200, body: { status: 'crashed' } });

    const after = await Promise.all([
      getJson(`${url}/health`),
      postJson(`${url}/run_model`, { text: 'ok' }),
      getJson(`${url}/`),
      getJson(`${url}/nope`),
      postJson(`${url}/api/v1/_crash`, {}),
    ]);
    for (const { status, body } of after) {
      expect(status).toBe(500);
      expect(body).toEqual({ error: 'CRASHED', message: expect.any(String) });
    }
  });
});

describe('POST /api/v1/_fault', () => {
  it('is an unknown route when the crash API is disabled', async () => {
    const { url } = await workers.start();
    expect((await postJson(`${url}/api/v1/_fault`, { mode: 'hang' })).status).toBe(404);
  });

  it.each([
    ['an unknown mode', { mode: 'explode' }],
    ['slow without a delay', { mode: 'slow' }],
    ['a negative duration', { mode: 'hang', forMs: -1 }],
  ])('refuses %s with 400 INVALID_INPUT, changing nothing', async (_case, payload) => {
    const { url } = await workers.start({ enableCrashApi: true });
    expect(await postJson(`${url}/api/v1/_fault`, payload)).toMatchObject({ status: 400, body: { error: 'INVALID_INPUT' } });
    expect((await postJson(`${url}/run_model`, { text: 'ok' })).status).toBe(200);
  });

  it('hang: /run_model never answers while /health does, until the fault ends', async () => {
    const { url } = await workers.start({ enableCrashApi: true });
    expect(await postJson(`${url}/api/v1/_fault`, { mode: 'hang', forMs: 1_500 })).toEqual({ status: 200, body: { fault: { mode: 'hang', forMs: 1_500 } } });
    const hung = fetch(`${url}/run_model`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"ok"}', signal: AbortSignal.timeout(500) });
    await expect(hung).rejects.toMatchObject({ name: 'TimeoutError' });
    expect((await getJson(`${url}/health`)).status).toBe(200);
    // The fault's 1.5 s are what is tested: past them (0.5 s went on the timeout), /run_model answers again.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await postJson(`${url}/run_model`, { text: 'ok' })).status).toBe(200);
  });

  it('slow: every route answers the delay late; off: back to normal at once', async () => {
    const { url } = await workers.start({ enableCrashApi: true });
    await postJson(`${url}/api/v1/_fault`, { mode: 'slow', delayMs: 300 });
    const timed = async (call: () => Promise<{ status: number }>) => {
      const startedAt = performance.now();
      const { status } = await call();
      return { status, late: performance.now() - startedAt >= 300 };
    };
    expect(await timed(() => getJson(`${url}/health`))).toEqual({ status: 200, late: true });
    expect(await timed(() => postJson(`${url}/run_model`, { text: 'ok' }))).toEqual({ status: 200, late: true });
    await postJson(`${url}/api/v1/_fault`, { mode: 'off' });
    expect(await timed(() => getJson(`${url}/health`))).toEqual({ status: 200, late: false });
  });
});

async function waitForInFlight(url: string, count: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if ((await getJson(`${url}/health`)).body.inFlight === count) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`worker never had ${count} request(s) in flight`);
}

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFlask, startFlaskApp, stopFlaskApps, type FlaskApp } from '../helpers/flask-model.js';
import { startOrchestrator, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { pidsGone } from '../helpers/processes.js';
import { freeBasePort } from '../../common/src/free-ports.js';

const MODEL = 'naive-bayes-sentiment@1';

/** Sentences the example's model must get right; none of them is in its training set. */
const POSITIVE = ['I really enjoyed the concert, great fun', 'What a lovely and delightful hotel', 'Excellent support, I am very happy'];
const NEGATIVE = ['The hotel was dirty and the staff rude', 'Terrible quality, a complete waste of money', 'I hate the new update, it is awful'];

interface RunModelAnswer {
  prediction: { label: string; scores: Record<'pos' | 'neu' | 'neg' | 'compound', number> };
  model: string;
  container: string;
  inference_ms: number;
}

function post(url: string, body: string): ReturnType<typeof request> {
  return request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
}

describe('the orchestrator in front of the example Flask model app', () => {
  const apps: FlaskApp[] = [];
  let orchestrator: RunningOrchestrator | undefined;

  beforeAll(async () => {
    await ensureFlask();
    const base = await freeBasePort([0, 1]);
    // A little simulated inference time, so 40 requests overlap and most of them queue.
    for (const offset of [0, 1]) apps.push(await startFlaskApp(`flask-${base + offset}`, base + offset, { WORK_MS: '20' }));
    // The fixture reads only the id and port of each backend.
    orchestrator = await startOrchestrator(apps);
  }, 300_000);

  afterAll(async () => {
    await orchestrator?.close();
    stopFlaskApps(apps, 'SIGTERM');
    if (!(await pidsGone(apps.map((a) => a.pid)))) stopFlaskApps(apps, 'SIGKILL');
  });

  it("answers 40 concurrent requests with the model's predictions, queued over both containers", async () => {
    const texts = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? POSITIVE : NEGATIVE)[i % 3]!);
    const answers = await Promise.all(
      texts.map(async (text) => {
        const response = await post(`${orchestrator!.url}/new_request`, JSON.stringify({ text }));
        return {
          text,
          status: response.statusCode,
          servedBy: response.headers['x-served-by'],
          queueWaitMs: Number(response.headers['x-queue-wait-ms']),
          body: (await response.body.json()) as RunModelAnswer,
        };
      }),
    );

    const ids = apps.map((a) => a.id);
    for (const answer of answers) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body).toMatchObject({
        prediction: { label: POSITIVE.includes(answer.text) ? 'positive' : 'negative' },
        model: MODEL,
        container: answer.servedBy,
      });
      expect(Object.keys(answer.body.prediction.scores).sort()).toEqual(['compound', 'neg', 'neu', 'pos']);
      expect(answer.body.inference_ms).toBeGreaterThanOrEqual(20);
      expect(ids).toContain(answer.servedBy);
    }
    expect(new Set(answers.map((a) => a.servedBy))).toEqual(new Set(ids));
    // Two single-threaded apps, 40 requests: the orchestrator held the rest in its queue.
    expect(answers.some((a) => a.queueWaitMs > 0)).toBe(true);

    // The apps' own counters: every request computed exactly once.
    const served = await Promise.all(apps.map(async (a) => ((await (await request(`http://127.0.0.1:${a.port}/health`)).body.json()) as { served: number }).served));
    expect(served.reduce((sum, n) => sum + n, 0)).toBe(40);
  });

  it.each([
    ['INVALID_JSON', '{"text": '],
    ['INVALID_INPUT', '{"txt": "no text field"}'],
  ])("passes the app's 400 %s through unchanged", async (code, body) => {
    const direct = await post(`http://127.0.0.1:${apps[0]!.port}/run_model`, body);
    const directBody = await direct.body.text();
    const proxied = await post(`${orchestrator!.url}/new_request`, body);
    const proxiedBody = await proxied.body.text();

    expect(direct.statusCode).toBe(400);
    expect(JSON.parse(directBody)).toMatchObject({ error: code, message: expect.any(String) });
    expect(proxied.statusCode).toBe(400);
    expect(proxied.headers['content-type']).toBe(direct.headers['content-type']);
    expect(proxiedBody).toBe(directBody);
    // An answer, even a 400, is never retried on another container.
    expect(proxied.headers['x-attempts']).toBeUndefined();
  });

  it('stops: the orchestrator closes and the Flask apps exit 0 on SIGTERM', async () => {
    await orchestrator!.close();
    orchestrator = undefined;
    stopFlaskApps(apps, 'SIGTERM');
    expect(await Promise.all(apps.map((a) => a.exited))).toEqual([0, 0]);
    expect(await pidsGone(apps.map((a) => a.pid))).toBe(true);
  });
});

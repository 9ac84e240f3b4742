import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type CliResult } from '../helpers/cli.js';
import {
  buildWorkerImage,
  ENGINE_SETUP_TIMEOUT_MS,
  ensureDockerEngine,
  healthOf,
  inspect,
  poll,
  removeDockerObjects,
  runOk,
  uniqueName,
} from '../helpers/docker.js';

import { postJson } from './helpers.js';
import { freeBasePort } from '../../common/src/free-ports.js';

// Real engine, real image: built once for the file and removed afterwards with every container it ran.
const image = `inference-worker:${uniqueName('test-image')}`;
const containers: string[] = [];
let build: CliResult;

beforeAll(async () => {
  await ensureDockerEngine();
  build = await buildWorkerImage(image);
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  await removeDockerObjects(containers, [image]);
}, 120_000);

const vaderVersion = (JSON.parse(readFileSync('node_modules/vader-sentiment/package.json', 'utf8')) as { version: string }).version;

describe('scripts/build-image.sh', () => {
  it('builds the image on a named base and reports its size', async () => {
    const summary = build.stdout.trim().split('\n').at(-1)!;
    const match = /^(\S+) ([0-9a-f]{12}) ([\d.]+) (B|kB|MB|GB) \(base (\S+)\)$/.exec(summary);
    expect(match, summary).not.toBeNull();
    const [, tag, shortId, amount, unit, base] = match!;
    expect(tag).toBe(image);
    expect(build.stderr).toContain(`base image ${base}`);

    const built = await inspect('--type', 'image', image);
    expect(built.Id.slice(7, 19)).toBe(shortId);
    const scale = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[unit as 'B' | 'kB' | 'MB' | 'GB'];
    expect(Math.abs(Number(amount) * scale - built.Size)).toBeLessThanOrEqual(0.05 * scale);
    expect(built.Config.Labels['org.opencontainers.image.base.name']).toBe(base);
  });

  it('fails with one line when the engine cannot be reached', async () => {
    const result = await run('bash', ['scripts/build-image.sh'], {
      env: { ...process.env, WORKER_IMAGE: image, DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^error: /);
  });
});

describe('worker image', () => {
  it('runs as a non-root user, checks its health in exec form and holds only the bundle', async () => {
    const { Config } = await inspect('--type', 'image', image);
    expect(Config.User).toMatch(/^[1-9]\d*(:\d+)?$/);
    expect(Config.Healthcheck.Test[0]).toBe('CMD');
    expect(Config.Healthcheck.Test).toContain('node');
    expect(Config.Labels['org.opencontainers.image.title']).toBe('inference-worker');

    const name = uniqueName('worker-image-ls');
    containers.push(name);
    const { stdout } = await runOk('docker', [
      'run', '--rm', '--name', name, '--network', 'none', '--entrypoint', 'node', image,
      '-e', "console.log(JSON.stringify(require('fs').readdirSync('/app')))",
    ]);
    expect(JSON.parse(stdout)).toEqual(['server.mjs']);
  });

  it('serves /health and real predictions on PORT with host networking, turns healthy and stops cleanly', async () => {
    const port = await freeBasePort([0]);
    const url = `http://127.0.0.1:${port}`;
    const name = uniqueName('worker-image-run');
    containers.push(name);
    await runOk('docker', [
      'run', '-d', '--name', name, '--network', 'host', '--health-interval', '1s', '--health-start-period', '0s',
      '-e', `PORT=${port}`, '-e', `CONTAINER_ID=${name}`, '-e', 'LOG_LEVEL=warn', image,
    ]);

    const health = await healthOf(`${url}/health`);
    expect(health).toMatchObject({ status: 'ok', container: name, model: `vader-sentiment@${vaderVersion}` });

    const positive = await postJson(`${url}/run_model`, { text: 'I love this product, it is wonderful!' });
    expect(positive.status).toBe(200);
    expect(positive.body).toMatchObject({ container: name, model: `vader-sentiment@${vaderVersion}`, prediction: { label: 'positive' } });
    expect(positive.body.prediction.scores.compound).toBeGreaterThan(0.5);
    const negative = await postJson(`${url}/run_model`, { text: 'This is terrible and I hate it.' });
    expect(negative.body.prediction.label).toBe('negative');

    // The process itself, not just the image config, runs as uid 1000.
    const top = await runOk('docker', ['top', name, '-o', 'pid,uid,args']);
    expect(top.stdout).toMatch(/^\s*\d+\s+1000\s+node \/app\/server\.mjs/m);

    const status = await poll(async () => {
      const state = (await inspect(name)).State;
      return state.Health?.Status === 'healthy' ? state.Health.Status : undefined;
    }, `${name} to turn healthy`);
    expect(status).toBe('healthy');

    await runOk('docker', ['stop', '--time', '10', name]);
    const stopped = (await inspect(name)).State;
    expect({ running: stopped.Running, exitCode: stopped.ExitCode }).toEqual({ running: false, exitCode: 0 });
  }, 90_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import { run } from '../helpers/cli.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, healthOf, inspect, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { freeBasePort } from '../../common/src/free-ports.js';

// Real engine and the compose tool this machine has: Debian's docker-compose 1.29, else the v2 plugin.
const image = `inference-worker:${uniqueName('test-compose')}`;
const project = uniqueName('wcompose').replace(/-/g, '');
const cluster = uniqueName('ctest');
const workerId = 'wt';
let compose: string[];
let variables: Record<string, string>;

beforeAll(async () => {
  await ensureDockerEngine();
  compose = (await run('docker-compose', ['version'])).code === 0 ? ['docker-compose'] : ['docker', 'compose'];
  await buildWorkerImage(image);
  const base = await freeBasePort([0, 1]);
  variables = { WORKER_IMAGE: image, MODEL_PORT_A: String(base), MODEL_PORT_B: String(base + 1), WORKER_ID: workerId, CLUSTER: cluster, LOG_LEVEL: 'warn' };
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  if (compose && variables) await runCompose(['-p', project, '-f', 'docker-compose.worker.yml', 'down', '--timeout', '5']);
  // Whatever compose left behind (a failed up, a failed down), by the project's label.
  const leftover = await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]);
  await removeDockerObjects(leftover.stdout.split('\n').filter(Boolean), [image]);
}, 120_000);

function runCompose(args: string[]) {
  const [file, ...prefix] = compose;
  return run(file!, [...prefix, ...args], { env: { ...process.env, ...variables }, timeoutMs: 120_000 });
}

async function projectContainers(): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]);
  return stdout.split('\n').filter(Boolean);
}

describe('docker-compose.worker.yml', () => {
  it('starts two host-network containers that answer /health with their ids and carry the driver labels; down removes them', async () => {
    const up = await runCompose(['-p', project, '-f', 'docker-compose.worker.yml', 'up', '-d']);
    expect(up.code, up.stderr).toBe(0);

    const ports = [Number(variables.MODEL_PORT_A), Number(variables.MODEL_PORT_B)];
    for (const port of ports) {
      const health = await healthOf(`http://127.0.0.1:${port}/health`);
      expect(health).toMatchObject({ status: 'ok', container: `${workerId}-${port}` });
    }

    const ids = await projectContainers();
    expect(ids).toHaveLength(2);
    const containers = await Promise.all(ids.map((id) => inspect(id)));
    const byPort = containers.sort((a, b) => Number(a.Config.Labels[LABELS.port]) - Number(b.Config.Labels[LABELS.port]));
    byPort.forEach((container, index) => {
      const port = ports[index]!;
      expect(container.Config.Labels).toMatchObject({
        [LABELS.cluster]: cluster,
        [LABELS.worker]: workerId,
        [LABELS.container]: `${workerId}-${port}`,
        [LABELS.port]: String(port),
      });
      expect(container.HostConfig.NetworkMode).toBe('host');
      expect(container.HostConfig.RestartPolicy.Name).toBe('unless-stopped');
      // The file has no healthcheck of its own: the image's applies.
      expect(container.Config.Healthcheck.Test.slice(0, 2)).toEqual(['CMD', 'node']);
      expect(container.Config.Env).toEqual(expect.arrayContaining([`PORT=${port}`, `FLASK_RUN_PORT=${port}`, 'HOST=0.0.0.0', 'FLASK_RUN_HOST=0.0.0.0']));
    });

    const down = await runCompose(['-p', project, '-f', 'docker-compose.worker.yml', 'down', '--timeout', '5']);
    expect(down.code, down.stderr).toBe(0);
    expect(await projectContainers()).toEqual([]);
    await expect(fetch(`http://127.0.0.1:${ports[0]}/health`)).rejects.toThrow();
  }, 120_000);

  it('merges with the bridge override into a valid config publishing each port on 127.0.0.1', async () => {
    const config = await runCompose(['-p', project, '-f', 'docker-compose.worker.yml', '-f', 'worker/docker-compose.bridge.yml', 'config']);
    expect(config.code, config.stderr).toBe(0);
    expect(config.stdout.match(/network_mode: bridge/g)).toHaveLength(2);
    expect(config.stdout).not.toMatch(/network_mode: host/);
    for (const port of [variables.MODEL_PORT_A, variables.MODEL_PORT_B]) {
      // 1.29 prints `127.0.0.1:P:P/tcp`; v2 prints the long form (host_ip, target, published).
      expect(config.stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}:${port}|published: "?${port}"?`));
    }
  });
});

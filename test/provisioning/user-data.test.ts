import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USER_DATA_LIMIT_BYTES, workerUserData } from '../../provisioning/src/aws/user-data.js';
import { LABELS } from '../../runtime/src/driver.js';
import { run } from '../helpers/cli.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, healthOf, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { freeBasePort } from '../../common/src/free-ports.js';

const base = {
  cluster: 'demo',
  workerId: 'w1',
  image: 'registry.example/inference-worker:1.2',
  imageSource: 'registry' as const,
  ports: [5000, 5001] as [number, number],
  env: { WORK_MS: '0' },
};

describe('worker user-data', () => {
  it('stays under EC2\'s 16 KB limit and embeds the repository\'s compose file unchanged', async () => {
    const script = workerUserData(base);
    expect(Buffer.byteLength(script)).toBeLessThan(USER_DATA_LIMIT_BYTES);
    expect(script).toContain((await readFile('docker-compose.worker.yml', 'utf8')).trimEnd());
    expect(script).toContain('WORKER_IMAGE=registry.example/inference-worker:1.2\n');
  });

  it("writes only the compose file's variables and the template env into the containers' environment file", () => {
    const envFile = /cat > "\$INSTALL_DIR\/worker\.env" <<'ENV_FILE_END'\n([\s\S]*?)\nENV_FILE_END\n/.exec(workerUserData(base))?.[1];
    expect(envFile?.split('\n')).toEqual([
      'WORKER_IMAGE=registry.example/inference-worker:1.2',
      'CLUSTER=demo',
      'WORKER_ID=w1',
      'MODEL_HOST=0.0.0.0',
      'MODEL_PORT_A=5000',
      'MODEL_PORT_B=5001',
      'WORK_MS=0',
    ]);
  });

  it('refuses a value a boot script cannot carry safely', () => {
    expect(() => workerUserData({ ...base, env: { WORK_MS: '1; rm -rf /' } })).toThrow(/WORK_MS contains characters/);
  });
});

// The generated script run for real on this machine, which has Docker: it skips the install,
// writes the compose file and brings up the two containers.
describe('worker user-data executed locally', () => {
  const image = `inference-worker:${uniqueName('userdata')}`;
  const cluster = uniqueName('ud').replace(/[^a-z0-9-]/g, '');
  let dir: string;

  beforeAll(async () => {
    await ensureDockerEngine();
    await buildWorkerImage(image);
    dir = await mkdtemp(join(tmpdir(), 'user-data-'));
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);

  afterAll(async () => {
    const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${cluster}`]);
    await removeDockerObjects(stdout.split('\n').filter(Boolean), [image]);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('skips the Docker install, writes the compose file and starts two containers that answer /health', { timeout: 180_000 }, async () => {
    const port = await freeBasePort([0, 1]);
    const installDir = join(dir, 'opt');
    const scriptPath = join(dir, 'user-data.sh');
    await writeFile(scriptPath, workerUserData({ ...base, cluster, image, ports: [port, port + 1], installDir }));

    const result = await run('bash', [scriptPath], { timeoutMs: 150_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('[inference-worker] Docker already installed');
    expect(result.stdout).toContain(`[inference-worker] started ${cluster}-w1`);
    expect(await readFile(join(installDir, 'docker-compose.worker.yml'), 'utf8')).toBe(await readFile('docker-compose.worker.yml', 'utf8'));
    for (const p of [port, port + 1]) expect(await healthOf(`http://127.0.0.1:${p}/health`)).toMatchObject({ status: 'ok', container: `w1-${p}` });

    // Run again (a reboot re-runs nothing, but an operator may): the same two containers stay.
    const before = (await runOk('docker', ['ps', '-q', '--filter', `label=${LABELS.cluster}=${cluster}`])).stdout.split('\n').filter(Boolean).sort();
    expect(before).toHaveLength(2);
    expect((await run('bash', [scriptPath], { timeoutMs: 150_000 })).code).toBe(0);
    const after = (await runOk('docker', ['ps', '-q', '--filter', `label=${LABELS.cluster}=${cluster}`])).stdout.split('\n').filter(Boolean).sort();
    expect(after).toEqual(before);
  });
});

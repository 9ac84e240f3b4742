import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USER_DATA_LIMIT_BYTES, workerUserData } from '../../provisioning/src/aws/user-data.js';
import { LABELS } from '../../runtime/src/driver.js';
import { run } from '../helpers/cli.js';
import { GPU_REFUSAL } from '../../runtime/src/errors.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, healthOf, inspect, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
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

  it('passes resources as compose variables, and writes and uses the GPU override only when GPUs are asked', async () => {
    const limited = workerUserData({ ...base, resources: { cpus: 0.5, memoryMb: 256 } });
    expect(limited).toContain('WORK_MS=0\nMODEL_CPUS=0.5\nMODEL_MEMORY=256m\nENV_FILE_END');
    expect(limited).not.toContain('$INSTALL_DIR/docker-compose.gpu.yml');

    const withGpus = workerUserData({ ...base, resources: { gpus: 'all' } });
    expect(Buffer.byteLength(withGpus)).toBeLessThan(USER_DATA_LIMIT_BYTES);
    expect(withGpus).toContain('MODEL_GPUS=all\n');
    expect(withGpus).toContain((await readFile('worker/docker-compose.gpu.yml', 'utf8')).trimEnd());
    expect(withGpus).toContain('-f "$INSTALL_DIR/docker-compose.worker.yml" -f "$INSTALL_DIR/docker-compose.gpu.yml" up -d');
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

  it('skips the Docker install, writes the compose file and starts two containers, limited as the template says, that answer /health', { timeout: 180_000 }, async () => {
    const port = await freeBasePort([0, 1]);
    const installDir = join(dir, 'opt');
    const scriptPath = join(dir, 'user-data.sh');
    await writeFile(scriptPath, workerUserData({ ...base, cluster, image, ports: [port, port + 1], installDir, resources: { cpus: 0.5, memoryMb: 128 } }));

    const result = await run('bash', [scriptPath], { timeoutMs: 150_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('[inference-worker] Docker already installed');
    expect(result.stdout).toContain(`[inference-worker] started ${cluster}-w1`);
    expect(await readFile(join(installDir, 'docker-compose.worker.yml'), 'utf8')).toBe(await readFile('docker-compose.worker.yml', 'utf8'));
    for (const p of [port, port + 1]) expect(await healthOf(`http://127.0.0.1:${p}/health`)).toMatchObject({ status: 'ok', container: `w1-${p}` });
    const ids = (await runOk('docker', ['ps', '-q', '--filter', `label=${LABELS.cluster}=${cluster}`])).stdout.split('\n').filter(Boolean);
    for (const id of ids) expect((await inspect(id)).HostConfig).toMatchObject({ NanoCpus: 500_000_000, Memory: 128 * 1024 * 1024 });

    // Run again (a reboot re-runs nothing, but an operator may): the same two containers stay.
    const before = (await runOk('docker', ['ps', '-q', '--filter', `label=${LABELS.cluster}=${cluster}`])).stdout.split('\n').filter(Boolean).sort();
    expect(before).toHaveLength(2);
    expect((await run('bash', [scriptPath], { timeoutMs: 150_000 })).code).toBe(0);
    const after = (await runOk('docker', ['ps', '-q', '--filter', `label=${LABELS.cluster}=${cluster}`])).stdout.split('\n').filter(Boolean).sort();
    expect(after).toEqual(before);
  });

  it('with GPUs, writes the GPU override and fails on an engine without a GPU runtime, saying why', { timeout: 180_000 }, async () => {
    const port = await freeBasePort([0, 1]);
    const installDir = join(dir, 'opt-gpu');
    const scriptPath = join(dir, 'user-data-gpu.sh');
    await writeFile(scriptPath, workerUserData({ ...base, cluster, workerId: 'w2', image, ports: [port, port + 1], installDir, resources: { gpus: 'all' } }));

    const result = await run('bash', [scriptPath], { timeoutMs: 150_000 });
    expect(await readFile(join(installDir, 'docker-compose.gpu.yml'), 'utf8')).toBe(await readFile('worker/docker-compose.gpu.yml', 'utf8'));
    expect(result.code).not.toBe(0);
    // The engine's own refusal (no NVIDIA Container Toolkit here), in the boot log.
    expect(result.stderr).toMatch(GPU_REFUSAL);
  });
});

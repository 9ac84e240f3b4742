import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/src/errors.js';
import { loadProvisionConfig } from '../../provisioning/src/config.js';
import { containerTemplate, desiredLayout } from '../../provisioning/src/inventory.js';

/** The config error thrown for these sources; fails the test when none is. */
function configError(sources: Parameters<typeof loadProvisionConfig>[0]): ConfigError {
  try {
    loadProvisionConfig(sources);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadProvisionConfig', () => {
  it('has the documented defaults', () => {
    expect(loadProvisionConfig({ env: {} })).toEqual({
      cluster: 'local',
      provider: 'local',
      runtime: 'process',
      workerImage: 'inference-worker:latest',
      workers: 2,
      containersPerWorker: 2,
      host: '127.0.0.1',
      basePort: 5000,
      portStride: 100,
      statePath: 'status/state.json',
      predictPath: '/run_model',
      healthPath: '/health',
      workMs: 0,
      enableCrashApi: false,
      healthTimeoutMs: 30_000,
      logLevel: 'warn',
      instanceType: 't3.small',
      rootVolumeGb: 20,
      withOrchestrator: false,
      orchestratorImage: 'inference-orchestrator:latest',
      orchestratorPort: 8080,
      orchestratorInstanceType: 't3.small',
      sshUser: 'ubuntu',
      sshPort: 22,
      healthVia: 'direct',
      uploadImage: false,
      allowWorldOpen: false,
      addressType: 'public',
      sshHostKeyCheck: true,
      launchTimeoutMs: 900_000,
    });
  });

  it('defaults to 4 workers on AWS, and needs the CIDR allowed to SSH there', () => {
    expect(loadProvisionConfig({ env: {}, flags: { provider: 'aws', sshCidr: '203.0.113.7/32' } })).toMatchObject({ workers: 4, provider: 'aws' });
    expect(configError({ env: {}, flags: { provider: 'aws' } }).message).toContain('"sshCidr"');
  });

  it('refuses rules open to the whole internet unless allowWorldOpen says so', () => {
    expect(configError({ env: {}, flags: { provider: 'aws', sshCidr: '0.0.0.0/0' } }).message).toMatch(/"sshCidr".*whole internet/);
    expect(configError({ env: {}, flags: { provider: 'aws', sshCidr: '203.0.113.7/32', orchestratorCidr: '0.0.0.0/0' } }).message).toContain('"orchestratorCidr"');
    expect(loadProvisionConfig({ env: {}, flags: { provider: 'aws', sshCidr: '0.0.0.0/0', allowWorldOpen: true } }).sshCidr).toBe('0.0.0.0/0');
  });

  it('takes a root volume from the 8 GiB an Ubuntu image needs to the 16 TiB gp3 allows', () => {
    expect(loadProvisionConfig({ env: { PROVISION_ROOT_VOLUME_GB: '64' } }).rootVolumeGb).toBe(64);
    for (const size of ['7', '16385', '20.5']) expect(configError({ env: {}, flags: { rootVolumeGb: size } }).message).toContain('"rootVolumeGb"');
  });

  it('needs the private key of a named key pair', () => {
    expect(configError({ env: {}, flags: { provider: 'aws', sshCidr: '203.0.113.7/32', keyName: 'mine' } }).message).toContain('"sshKeyPath"');
  });

  it('reads PROVISION_* env, and flags win over env and file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'provision-config-'));
    try {
      const file = join(dir, 'cluster.json');
      await writeFile(file, JSON.stringify({ workers: 5, workMs: 7 }));
      const config = loadProvisionConfig({
        file,
        env: { PROVISION_WORKERS: '3', PROVISION_ENABLE_CRASH_API: 'yes' },
        flags: { workers: '4' },
      });
      expect(config).toMatchObject({ workers: 4, workMs: 7, enableCrashApi: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects workers=0 naming the key', () => {
    expect(configError({ env: {}, flags: { workers: '0' } }).message).toContain('"workers"');
  });

  it('rejects a basePort that is not a number naming the key and the env variable', () => {
    const error = configError({ env: { PROVISION_BASE_PORT: 'abc' } });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toContain('"basePort"');
    expect(error.message).toContain('PROVISION_BASE_PORT');
  });

  it('rejects more containers per worker than the port stride allows', () => {
    expect(configError({ env: {}, flags: { containersPerWorker: '11', portStride: '10' } }).message).toContain('"containersPerWorker"');
  });

  it('rejects a cluster whose last port would exceed 65535', () => {
    expect(configError({ env: {}, flags: { basePort: '65000', workers: '10' } }).message).toContain('"workers"');
  });

  it('accepts runtime docker only with the two containers per worker the compose file runs', () => {
    expect(loadProvisionConfig({ env: { PROVISION_RUNTIME: 'docker' } })).toMatchObject({ runtime: 'docker', containersPerWorker: 2 });
    expect(configError({ env: {}, flags: { runtime: 'docker', containersPerWorker: '3' } }).message).toContain('"containersPerWorker"');
    expect(configError({ env: {}, flags: { runtime: 'podman' } }).message).toContain('"runtime"');
  });

  it("takes another model app's paths (recorded in the template) with runtime docker or on AWS, never a path that is not one", () => {
    const flags = { runtime: 'docker', predictPath: '/v1/models/digits:predict', healthPath: '/api/v1/_health' };
    expect(containerTemplate(loadProvisionConfig({ env: {}, flags })).contract).toEqual({ predictPath: '/v1/models/digits:predict', healthPath: '/api/v1/_health' });
    expect(loadProvisionConfig({ env: { PROVISION_HEALTH_PATH: '/healthz' }, flags: { provider: 'aws', sshCidr: '203.0.113.7/32' } }).healthPath).toBe('/healthz');
    for (const path of ['predict', '/predict?x=1', '/predict#a', 'http://x/predict', '/pre dict', '']) {
      expect(configError({ env: {}, flags: { runtime: 'docker', predictPath: path } }).message).toContain('"predictPath"');
    }
    // Local processes run the bundled worker: its paths only.
    expect(configError({ env: {}, flags: { healthPath: '/healthz' } }).message).toMatch(/"healthPath".*runtime process/);
  });

  it('rejects an unknown provider', () => {
    expect(configError({ env: {}, flags: { provider: 'gcp' } }).message).toContain('"provider"');
  });

  it('takes cpus, memoryMb and gpus from flags and env into the template with runtime docker or on AWS, and none of them with runtime process', () => {
    const config = loadProvisionConfig({ env: { PROVISION_CPUS: '0.5', PROVISION_GPUS: 'all' }, flags: { runtime: 'docker', memoryMb: '512' } });
    expect(containerTemplate(config).resources).toEqual({ cpus: 0.5, memoryMb: 512, gpus: 'all' });
    const aws = loadProvisionConfig({ env: {}, flags: { provider: 'aws', sshCidr: '203.0.113.7/32', gpus: '2' } });
    expect(containerTemplate(aws).resources).toEqual({ gpus: 2 });
    // Unset: no resources at all, so the state file says nothing of limits.
    expect(containerTemplate(loadProvisionConfig({ env: {}, flags: { runtime: 'docker' } }))).not.toHaveProperty('resources');

    for (const [key, value] of [['cpus', '0'], ['cpus', 'half'], ['memoryMb', '5'], ['memoryMb', '1.5'], ['gpus', '0'], ['gpus', 'some']] as const) {
      expect(configError({ env: {}, flags: { runtime: 'docker', [key]: value } }).message).toContain(`"${key}"`);
    }
    // Local processes cannot be limited.
    for (const [key, value] of [['cpus', '1'], ['memoryMb', '256'], ['gpus', 'all']] as const) {
      expect(configError({ env: {}, flags: { [key]: value } }).message).toMatch(new RegExp(`"${key}".*runtime process`));
    }
  });
});

describe('desiredLayout', () => {
  it('gives worker k ports basePort+(k-1)*portStride+i and names containers after worker and port', () => {
    const layout = desiredLayout(loadProvisionConfig({ env: {}, flags: { workers: '2' } }));
    expect(layout.map((worker) => worker.id)).toEqual(['w1', 'w2']);
    expect(layout.flatMap((worker) => worker.containers)).toEqual([
      { name: 'w1-5000', workerId: 'w1', host: '127.0.0.1', port: 5000 },
      { name: 'w1-5001', workerId: 'w1', host: '127.0.0.1', port: 5001 },
      { name: 'w2-5100', workerId: 'w2', host: '127.0.0.1', port: 5100 },
      { name: 'w2-5101', workerId: 'w2', host: '127.0.0.1', port: 5101 },
    ]);
  });
});

describe('containerTemplate', () => {
  it("holds only the model's own settings, whatever else provisioning's environment holds", () => {
    const config = loadProvisionConfig({
      env: { PROVISION_WORK_MS: '5', PROVISION_ENABLE_CRASH_API: 'true', ORCH_ADMIN_TOKEN: 'admin-token-0123456789abcdef', AWS_SECRET_ACCESS_KEY: 'secret-0123456789', LOG_LEVEL: 'trace' },
    });
    // The orchestrator starts every replacement from this: anything more would reach each model process.
    const contract = { predictPath: '/run_model', healthPath: '/health' };
    expect(containerTemplate(config)).toEqual({ env: { WORK_MS: '5', ENABLE_CRASH_API: 'true' }, contract });
    expect(containerTemplate({ ...config, runtime: 'docker' })).toEqual({ image: config.workerImage, env: { WORK_MS: '5', ENABLE_CRASH_API: 'true' }, contract });
  });
});

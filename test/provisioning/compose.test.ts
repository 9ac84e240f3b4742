import { describe, expect, it } from 'vitest';
import { Compose } from '../../provisioning/src/compose.js';

describe('Compose', () => {
  it("runs compose with the engine's variables and the file's, never the rest of provisioning's environment", async () => {
    const calls: Array<{ args: string[]; env: NodeJS.ProcessEnv | undefined }> = [];
    const compose = new Compose(
      {
        PATH: '/usr/local/bin:/usr/bin',
        HOME: '/home/operator',
        DOCKER_HOST: 'unix:///run/user/1000/docker.sock',
        ORCH_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
        AWS_SECRET_ACCESS_KEY: 'secret-access-key-0123456789',
        // Names the compose file interpolates: from provisioning's shell they would reach every container.
        LOG_LEVEL: 'trace',
        MAX_BODY_BYTES: '7',
      },
      async (file, args, env) => {
        calls.push({ args: [file, ...args], env });
        return { stdout: '', stderr: '' };
      },
    );

    await compose.up('demo-w1', { WORKER_ID: 'w1', WORK_MS: '0' });

    const engine = { PATH: '/usr/local/bin:/usr/bin', HOME: '/home/operator', DOCKER_HOST: 'unix:///run/user/1000/docker.sock' };
    expect(calls).toEqual([
      { args: ['docker', 'compose', 'version'], env: engine },
      { args: expect.arrayContaining(['docker', 'compose', '--project-name', 'demo-w1', 'up']), env: { ...engine, WORKER_ID: 'w1', WORK_MS: '0' } },
    ]);
  });
});

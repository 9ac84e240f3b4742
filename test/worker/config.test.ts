import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/src/errors.js';
import { loadWorkerConfig } from '../../worker/src/config.js';

describe('loadWorkerConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadWorkerConfig({ env: {} })).toEqual({
      host: '127.0.0.1',
      port: 5000,
      containerId: `${hostname()}:5000`,
      workMs: 0,
      enableCrashApi: false,
      maxBodyBytes: 1024 * 1024,
      logLevel: 'info',
    });
  });

  it('reads unprefixed environment variables and coerces them', () => {
    const config = loadWorkerConfig({ env: { PORT: '5123', CONTAINER_ID: 'c1', WORK_MS: '250', ENABLE_CRASH_API: 'true' } });
    expect(config).toMatchObject({ port: 5123, containerId: 'c1', workMs: 250, enableCrashApi: true });
  });

  it('derives the default container id from the configured port', () => {
    expect(loadWorkerConfig({ env: { PORT: '5007' } }).containerId).toBe(`${hostname()}:5007`);
  });

  it('lets flags override the environment', () => {
    expect(loadWorkerConfig({ env: { PORT: '5001' }, flags: { port: '5002' } }).port).toBe(5002);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(loadWorkerConfig({ env: {} }))).toBe(true);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['WORK_MS', '-1'],
    ['ENABLE_CRASH_API', 'maybe'],
  ])('rejects %s=%s with an error naming the variable', (name, value) => {
    const load = () => loadWorkerConfig({ env: { [name]: value } });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(name);
  });
});

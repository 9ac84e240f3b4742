import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { stateFileSchema } from '../../status/src/schema.js';
import { probeHealth } from '../../provisioning/src/wait-healthy.js';
import { runEntry } from '../helpers/cli.js';
import { useTempCluster } from '../helpers/cluster.js';
import { pidsGone } from '../helpers/processes.js';

/** The environment without PROVISION_* variables, so a developer's settings cannot leak into the test. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PROVISION_')));

/** Run the real CLI as `npm run provision|teardown` would, from the repo root. */
const cli = (args: string[]) => runEntry('provisioning/src/main.ts', args, { env: cleanEnv });

describe('provisioning CLI', () => {
  const cluster = useTempCluster();

  it('provisions real worker processes, reports progress, and tears them down', { timeout: 90_000 }, async () => {
    const flags = [...cluster.cliFlags, '--workers', '2', '--containers-per-worker', '1'];
    const provisioned = await cli(['provision', '--json', ...flags]);
    expect(provisioned.stderr).toContain('[provision] 2/2 containers healthy');
    expect(provisioned.code).toBe(0);

    const report = JSON.parse(provisioned.stdout) as { started: string[]; containers: { id: string; host: string; port: number }[] };
    expect(report.started).toEqual([`w1-${cluster.basePort}`, `w2-${cluster.basePort + 10}`]);
    const state = stateFileSchema.parse(JSON.parse(await readFile(cluster.statePath, 'utf8')));
    expect(state.containers.map((c) => c.id)).toEqual(report.started);
    for (const c of state.containers) expect(await probeHealth({ name: c.id, host: c.host, port: c.port }, '/health')).toEqual({ ok: true });

    const again = await cli(['provision', ...flags]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('0 started, 2 kept');
    expect(again.stdout).toContain('next: npm start');

    const tornDown = await cli(['teardown', ...flags]);
    expect(tornDown.code).toBe(0);
    expect(await pidsGone(state.containers.map((c) => Number(c.runtimeId)))).toBe(true);
    expect(stateFileSchema.parse(JSON.parse(await readFile(cluster.statePath, 'utf8'))).containers).toEqual([]);
  });

  it('rejects bad config with one line naming the key and exit code 2', async () => {
    const result = await cli(['provision', ...cluster.cliFlags, '--workers', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('[CONFIG_INVALID]');
    expect(result.stderr).toContain('"workers"');
  });

  it('refuses a corrupted state file with one line and leaves it untouched', async () => {
    await writeFile(cluster.statePath, 'not json at all');
    const result = await cli(['provision', ...cluster.cliFlags]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('[STATE_FILE_INVALID]');
    expect(await readFile(cluster.statePath, 'utf8')).toBe('not json at all');
  });

  it('rejects an unknown command or flag as usage errors', async () => {
    expect((await cli(['deploy'])).code).toBe(2);
    expect((await cli(['provision', '--wrokers', '3'])).stderr).toContain('[USAGE]');
  });
});

import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { emptyState, STATE_VERSION } from '../../status/src/schema.js';
import { useTempCluster } from '../helpers/cluster.js';
import { runOrchestrator } from '../helpers/orchestrator-process.js';

/** A state file as provisioning writes it, with one container. */
const valid = JSON.stringify(unmanagedInventory('local', [{ id: 'w1-5000', port: 5000 }]), null, 2);

const PROVISION = '`npm run provision`';

/** `says`: what the line must hold besides the file's path; a file that is not ours also gets the reset command. */
const cases: Array<{ name: string; content: string | null; code: 'STATE_FILE_INVALID' | 'INVENTORY_INVALID'; says?: string }> = [
  { name: 'a file that is not JSON', content: 'cluster: local\nworkers: 2\n', code: 'STATE_FILE_INVALID', says: 'not JSON' },
  // What a crash halfway through a non-atomic write leaves.
  { name: 'a truncated state file', content: valid.slice(0, valid.length / 2), code: 'STATE_FILE_INVALID', says: 'not JSON' },
  { name: 'an empty file', content: '', code: 'STATE_FILE_INVALID', says: 'not JSON' },
  { name: 'a JSON array', content: '["w1-5000"]', code: 'STATE_FILE_INVALID' },
  { name: "another program's JSON object", content: '{"name":"some-app","dependencies":{}}', code: 'STATE_FILE_INVALID' },
  {
    name: 'a state file of a future version',
    content: JSON.stringify({ ...JSON.parse(valid), version: STATE_VERSION + 1 }),
    code: 'STATE_FILE_INVALID',
    says: `version: ${STATE_VERSION + 1}`,
  },
  { name: 'a valid state without containers', content: JSON.stringify(emptyState('local', 'provisioning')), code: 'INVENTORY_INVALID', says: PROVISION },
  { name: 'no state file at all', content: null, code: 'INVENTORY_INVALID', says: PROVISION },
];

describe('npm start with a state file it cannot use', () => {
  const cluster = useTempCluster(1);

  it.each(cases)('refuses $name: one line naming the file, exit 1, never listening, the file untouched', async ({ content, code, says }) => {
    if (content !== null) await writeFile(cluster.statePath, content);

    const result = await runOrchestrator(['--port', '0', '--state-path', cluster.statePath]);

    // Exited by itself (a listening orchestrator would have been killed by the timeout: code null).
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).not.toContain('orchestrator listening');
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^error: .*\\[${code}\\]$`))]);
    expect(lines[0]).toContain(cluster.statePath);
    if (says) expect(lines[0]).toContain(says);
    if (code === 'STATE_FILE_INVALID') expect(lines[0]).toContain(`\`npm run provision -- --reset --state-path ${cluster.statePath}\``);

    // Not a byte changed, no temp file left beside it, and nothing created where there was nothing.
    expect(await readdir(cluster.dir)).toEqual(content === null ? [] : ['state.json']);
    if (content !== null) expect(await readFile(cluster.statePath, 'utf8')).toBe(content);
  });

  it('refuses a state path it cannot read (a directory) as unreadable, without advising a reset that cannot help', async () => {
    await mkdir(cluster.statePath);
    const result = await runOrchestrator(['--port', '0', '--state-path', cluster.statePath]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([`error: cannot read state file ${cluster.statePath} (EISDIR) [STATE_FILE_UNREADABLE]`]);
  });
});

describe('npm start with a config it cannot use', () => {
  const cluster = useTempCluster(1);

  it.each([
    { name: 'a flag out of range', args: ['--port', '70000'], env: {}, line: 'config key "port" (flag --port): expected an integer from 0 to 65535; received "70000"' },
    { name: 'an environment variable out of range', args: [], env: { ORCH_HEALTH_FALL: '0' }, line: 'config key "healthFall" (env ORCH_HEALTH_FALL): expected an integer from 1 to 100; received "0"' },
    { name: 'a config file value of the wrong type', args: ['--config', '{dir}/config.json'], env: {}, file: '{"maxQueue":"lots"}', line: 'config key "maxQueue" (config file): expected an integer' },
    { name: 'a config file key that does not exist', args: ['--config', '{dir}/config.json'], env: {}, file: '{"maxQueu":5}', line: 'unknown key "maxQueu"' },
    { name: 'two keys that contradict each other', args: ['--ejection-base-ms', '10000', '--ejection-max-ms', '5000'], env: {}, line: 'config key "ejectionBaseMs" (flag --ejection-base-ms): expected at most ejectionMaxMs (5000)' },
  ])('refuses $name with one line naming the key, what it expected and what it found, exit 2, before reading the state', async ({ args, env, file, line }) => {
    if (file) await writeFile(`${cluster.dir}/config.json`, file);
    const result = await runOrchestrator([...args.map((a) => a.replace('{dir}', cluster.dir)), '--state-path', cluster.statePath], { env });
    expect(result.code, result.stderr).toBe(2);
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([expect.stringMatching(/^error: .*\[CONFIG_INVALID\]$/)]);
    expect(lines[0]).toContain(line);
  });
});

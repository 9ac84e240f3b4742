import { spawn } from 'node:child_process';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { KEY_PREFIX, keyHash } from '../../orchestrator/src/access-control.js';
import { clientKeySchema } from '../../orchestrator/src/config.js';
import { startBackend } from '../helpers/backend.js';
import { NETWORK_GUARD, REPO_ROOT, runEntry, type CliResult } from '../helpers/cli.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';

const ENTRY = 'orchestrator/src/keys-main.ts';

/** `npm run keys -- ARGS` with `input` on its stdin. */
function keysWithInput(args: string[], input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', ENTRY, ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, ...out }));
    child.stdin.end(input);
  });
}

const rig = useRig();

describe('npm run keys', () => {
  it('new: the key alone on stdout, its entry on stderr; the orchestrator given the entry takes the key', async () => {
    const result = await runEntry(ENTRY, ['new', 'app', '--scopes', 'infer,read', '--rate', '5', '--burst', '10']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^${KEY_PREFIX}[\\w-]{43}\\n$`));
    const key = result.stdout.trim();
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/clientKeys/);
    const entry = clientKeySchema.parse(JSON.parse(lines[1]!));
    expect(entry).toEqual({ name: 'app', sha256: keyHash(key), scopes: ['infer', 'read'], ratePerSecond: 5, burst: 10 });
    expect(result.stderr).not.toContain(key);

    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { clientKeys: [entry] });
    const answer = await request(`${rig.running.url}/new_request`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: '{}' });
    expect(answer.statusCode).toBe(200);
    await answer.body.dump();
  });

  it('new: two runs make two different keys; scopes default to infer', async () => {
    const [a, b] = await Promise.all([runEntry(ENTRY, ['new', 'a']), runEntry(ENTRY, ['new', 'b'])]);
    expect(a.stdout).not.toBe(b.stdout);
    expect(JSON.parse(a.stderr.trim().split('\n')[1]!)).toEqual({ name: 'a', sha256: keyHash(a.stdout.trim()), scopes: ['infer'] });
  });

  it('hash: the entry of a key read from stdin, on stdout', async () => {
    const key = 'my-own-key-of-enough-length-0123';
    const result = await keysWithInput(['hash', 'prometheus', '--scopes', 'read'], `${key}\n`);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ name: 'prometheus', sha256: keyHash(key), scopes: ['read'] });
  });

  it('refuses bad input with one line and exit 2, printing no key', { timeout: 90_000 }, async () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['no command', [], /expected `new NAME` or `hash NAME`/],
      ['an unknown command', ['make', 'app'], /expected `new NAME` or `hash NAME`/],
      ['no name', ['new'], /expected `new NAME` or `hash NAME`/],
      ['a name with a space', ['new', 'my app'], /^error: NAME: /],
      ['an unknown scope', ['new', 'app', '--scopes', 'infer,admin'], /^error: --scopes: /],
      ['a rate that is not a number', ['new', 'app', '--rate', 'fast'], /^error: --rate: /],
      ['a burst that is not whole', ['new', 'app', '--burst', '1.5'], /^error: --burst: /],
      ['an unknown flag', ['new', 'app', '--key', 'x'], /^error: .*--key/],
    ];
    const results = await Promise.all(cases.map(([, args]) => runEntry(ENTRY, args)));
    for (const [i, [what, , message]] of cases.entries()) {
      expect(results[i], what).toMatchObject({ code: 2, stdout: '' });
      expect(results[i]!.stderr.trim().split('\n'), what).toEqual([expect.stringMatching(message)]);
    }
  });

  it('hash refuses a stdin that is not one key with one line and exit 2', { timeout: 90_000 }, async () => {
    const inputs: Array<[string, string]> = [
      ['an empty stdin', ''],
      ['a short key', 'short\n'],
      ['a key with a space', 'my own key of enough length 0123\n'],
      ['two lines', 'my-own-key-of-enough-length-0123\nanother-key-of-enough-length-0123\n'],
    ];
    const results = await Promise.all(inputs.map(([, input]) => keysWithInput(['hash', 'app'], input)));
    for (const [i, [what]] of inputs.entries()) {
      expect(results[i], what).toMatchObject({ code: 2, stdout: '' });
      expect(results[i]!.stderr.trim().split('\n'), what).toEqual([expect.stringMatching(/^error: stdin: /)]);
    }
  });
});

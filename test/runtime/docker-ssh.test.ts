import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver, type SshTarget } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { ensureDockerEngine, health, healthSpec, removeLabelled, runLabels } from '../helpers/docker.js';

import { ensureSshd, generateKey, hashKnownHosts, knownHostsLine, startSshd, type Sshd } from '../helpers/sshd.js';
import { freeBasePort } from '../../common/src/free-ports.js';

describe('DockerDriver over SSH', () => {
  const labels = runLabels('docker-ssh-test');
  const suffix = labels[LABELS.cluster]!.slice(-8);
  let dir: string;
  let sshd: Sshd | undefined;
  let clientKey: string;
  let otherClientKey: string;
  let noDockerKey: string;
  let knownHosts: { trusted: string; hashed: string; wrongKey: string; otherHost: string };
  let local: DockerDriver;
  let basePort: number;

  const target = (overrides: Partial<SshTarget> = {}): SshTarget => ({
    host: '127.0.0.1',
    port: sshd!.port,
    username: 'root',
    privateKey: clientKey,
    knownHostsPath: knownHosts.trusted,
    ...overrides,
  });
  const overSsh = (overrides: Partial<SshTarget> = {}) => new DockerDriver({ connection: { ssh: target(overrides) } });

  beforeAll(async () => {
    await Promise.all([ensureDockerEngine(), ensureSshd()]);
    local = new DockerDriver({ connection: { socketPath: '/var/run/docker.sock' } });
    dir = await mkdtemp(join(tmpdir(), 'docker-ssh-'));
    const [hostKey, otherHostKey, clientPublic, , noDockerPublic] = await Promise.all(
      ['host_key', 'other_host_key', 'client_key', 'other_client_key', 'no_docker_key'].map((name) => generateKey(join(dir, name))),
    );
    // The third key may only run a command that fails like a machine without docker would.
    await writeFile(join(dir, 'authorized_keys'), `${clientPublic}\ncommand="echo 'docker: command not found' >&2; exit 127" ${noDockerPublic}\n`);
    const read = (name: string) => readFile(join(dir, name), 'utf8');
    [clientKey, otherClientKey, noDockerKey] = await Promise.all([read('client_key'), read('other_client_key'), read('no_docker_key')]);

    sshd = await startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: join(dir, 'authorized_keys') });
    knownHosts = {
      trusted: join(dir, 'known_hosts'),
      hashed: join(dir, 'known_hosts_hashed'),
      wrongKey: join(dir, 'known_hosts_wrong'),
      otherHost: join(dir, 'known_hosts_other'),
    };
    await writeFile(knownHosts.trusted, `# test sshd\n${knownHostsLine(sshd.port, hostKey!)}\n`);
    await writeFile(knownHosts.hashed, `${knownHostsLine(sshd.port, hostKey!)}\n`);
    await hashKnownHosts(knownHosts.hashed);
    await writeFile(knownHosts.wrongKey, `${knownHostsLine(sshd.port, otherHostKey!)}\n`);
    // The right key, but for port 22 and for another port: neither names this server.
    await writeFile(knownHosts.otherHost, `127.0.0.1 ${hostKey}\n${knownHostsLine(sshd.port + 1, hostKey!)}\n`);
    basePort = await freeBasePort([0]);
  }, 600_000);
  afterEach(async () => {
    await removeLabelled(local, labels);
  });
  afterAll(async () => {
    await sshd?.stop();
    if (local) await removeLabelled(local, labels);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates, lists, stops and removes a container through sshd, checking the host key against known_hosts', async () => {
    const driver = overSsh();
    const spec = healthSpec(`ds-${suffix}-a`, basePort, labels);

    const info = await driver.start(spec);
    expect(info).toMatchObject({ name: spec.name, state: 'running', port: basePort });
    expect(await health(basePort)).toEqual({ status: 200, body: { status: 'ok', id: spec.name } });
    expect((await driver.list(labels)).map((container) => container.runtimeId)).toEqual([info.runtimeId]);
    // The same engine, seen through its local socket.
    expect(await local.inspect(info.runtimeId)).toMatchObject({ name: spec.name, state: 'running' });

    await driver.stop(info.runtimeId, { timeoutMs: 2_000 });
    expect(await driver.inspect(info.runtimeId)).toMatchObject({ state: 'exited', exitCode: 0 });
    await driver.remove(info.runtimeId);
    expect(await driver.inspect(info.runtimeId)).toBeNull();
    expect(await local.list(labels)).toEqual([]);
  });

  it('accepts a hashed known_hosts entry', async () => {
    expect(await readFile(knownHosts.hashed, 'utf8')).toMatch(/^\|1\|/);

    await expect(overSsh({ knownHostsPath: knownHosts.hashed }).list(labels)).resolves.toEqual([]);
  });

  it('refuses a host whose key known_hosts does not list (HOST_KEY_UNKNOWN), also without a known_hosts file', async () => {
    await expect(overSsh({ knownHostsPath: knownHosts.otherHost }).list(labels)).rejects.toMatchObject({ code: 'HOST_KEY_UNKNOWN' });
    await expect(overSsh({ knownHostsPath: join(dir, 'missing_known_hosts') }).list(labels)).rejects.toMatchObject({ code: 'HOST_KEY_UNKNOWN' });
  });

  it('refuses a host that presents another key than known_hosts holds (HOST_KEY_MISMATCH), creating nothing', async () => {
    const driver = overSsh({ knownHostsPath: knownHosts.wrongKey });

    await expect(driver.list(labels)).rejects.toMatchObject({ code: 'HOST_KEY_MISMATCH' });
    await expect(driver.start(healthSpec(`ds-${suffix}-b`, basePort, labels))).rejects.toMatchObject({ code: 'HOST_KEY_MISMATCH' });
    expect(await local.list(labels)).toEqual([]);
  });

  it('skips the host-key check only when insecureSkipHostKeyCheck is set', async () => {
    const driver = overSsh({ knownHostsPath: knownHosts.wrongKey, insecureSkipHostKeyCheck: true });

    await expect(driver.list(labels)).resolves.toEqual([]);
  });

  it('fails with SSH_AUTH_FAILED for a key sshd does not authorize, without showing the key', async () => {
    const error = await overSsh({ privateKey: otherClientKey }).list(labels).catch((caught: unknown) => caught);

    expect(error).toMatchObject({ code: 'SSH_AUTH_FAILED' });
    const secret = otherClientKey.split('\n')[1]!;
    expect(String((error as Error).message)).not.toContain(secret);
    expect(String((error as Error).cause)).not.toContain(secret);
  });

  it('rejects an unusable private key at construction (CONFIG_INVALID), without showing it', () => {
    const garbage = 'not-a-key-but-a-secret-value';

    expect(() => overSsh({ privateKey: garbage })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => overSsh({ privateKey: garbage })).not.toThrow(garbage);
  });

  it('fails with ENGINE_UNREACHABLE when the far side cannot run docker', async () => {
    await expect(overSsh({ privateKey: noDockerKey }).list(labels)).rejects.toMatchObject({ code: 'ENGINE_UNREACHABLE' });
  });

  it('fails with ENGINE_UNREACHABLE when nothing listens on the SSH port', async () => {
    const closedPort = await freeBasePort([0]);

    await expect(overSsh({ port: closedPort }).list(labels)).rejects.toMatchObject({ code: 'ENGINE_UNREACHABLE' });
  });
});

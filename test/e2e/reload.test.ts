import { copyFile, writeFile } from 'node:fs/promises';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyHash } from '../../orchestrator/src/access-control.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { startBackend } from '../helpers/backend.js';
import { createTestCa, type IssuedCertificate, type TestCa } from '../helpers/certificates.js';
import { useTempCluster } from '../helpers/cluster.js';
import { startOrchestrator, useProcessRig } from '../helpers/orchestrator-process.js';
import { waitFor } from '../helpers/wait-for.js';

// Recognisable fake keys: none may show in the log.
const KEEP = 'orch_keep-RELOAD-5d2c7e9a1b3f4a60';
const GONE = 'orch_gone-RELOAD-8e1f0a2b3c4d5e6f';
const ADDED = 'orch_added-RELOAD-0a9b8c7d6e5f4a3b';

const RELOADED = 'config reloaded';
const REFUSED = 'reload refused: the running config is kept';

interface Answer {
  status: number;
  body: string;
  socket: TLSSocket;
}

/** One HTTPS request through `agent` (which trusts the test CA); resolves with the socket it went on. */
function send(url: string, agent: HttpsAgent, options: { method?: string; key?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { agent, method: options.method ?? 'GET', headers: options.key ? { authorization: `Bearer ${options.key}` } : {} }, (res) => {
      // Taken now: once the answer ends, the socket goes back to the agent.
      const socket = res.socket as TLSSocket;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, socket }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The certificate a new connection to `url` is shown. */
function fingerprintOf(url: string, ca: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('SIGHUP: certificates and client keys reloaded without a restart', () => {
  const cluster = useTempCluster(1);
  const rig = useProcessRig();
  let ca: TestCa;
  const agents: HttpsAgent[] = [];
  beforeEach(async () => {
    ca = await createTestCa();
  });
  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.destroy();
    await ca.cleanup();
  });

  /** A keep-alive agent that trusts the test CA, one socket at most. */
  const agent = (): HttpsAgent => {
    const a = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: ca.pem });
    agents.push(a);
    return a;
  };
  /** The log lines with message `msg` so far. */
  const logged = (msg: string) =>
    rig.orchestrator!.output.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => e.msg === msg);
  /** Send SIGHUP and wait for the reload's outcome, a new RELOADED or REFUSED line; resolves with it. */
  async function hangUp(outcome: typeof RELOADED | typeof REFUSED): Promise<Record<string, unknown>> {
    const before = logged(outcome).length;
    rig.orchestrator!.child.kill('SIGHUP');
    await waitFor(() => logged(outcome).length > before, 10_000, `a "${outcome}" log line`);
    return logged(outcome).at(-1)!;
  }

  /** Its served files: the names stay, the content is replaced, as a renewal does. */
  let served: { certFile: string; keyFile: string };
  const install = async (cert: IssuedCertificate): Promise<void> => {
    await copyFile(cert.certFile, served.certFile);
    await copyFile(cert.keyFile, served.keyFile);
  };
  const configFile = () => join(cluster.dir, 'orchestrator.json');
  const writeConfig = (config: Record<string, unknown>) => writeFile(configFile(), JSON.stringify({ tlsCertFile: served.certFile, tlsKeyFile: served.keyFile, ...config }));
  const keys = (...entries: Array<[string, string]>) => entries.map(([name, key]) => ({ name, sha256: keyHash(key) }));

  /** The orchestrator process over one backend, with --config; `manual` backends hold requests until answered. */
  async function start(config: Record<string, unknown>, backend: { manual?: boolean } = {}): Promise<{ first: IssuedCertificate }> {
    const first = await ca.issue('first');
    served = { certFile: join(cluster.dir, 'server.pem'), keyFile: join(cluster.dir, 'server.key') };
    await install(first);
    await writeConfig(config);
    rig.backend = await startBackend('b1', backend);
    await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', [rig.backend])));
    rig.orchestrator = await startOrchestrator(cluster.statePath, ['--config', configFile()]);
    expect(rig.orchestrator.url).toMatch(/^https:/);
    return { first };
  }

  it('replaces the certificate: a kept-alive connection goes on on its socket, a request in flight completes, a new connection gets the new one', async () => {
    const { first } = await start({}, { manual: true });
    const url = rig.orchestrator!.url;
    expect(await fingerprintOf(url, ca.pem)).toBe(first.fingerprint256);
    const kept = agent();
    const before = await send(`${url}/health`, kept);
    expect(before.status).toBe(200);
    const inFlight = send(`${url}/new_request`, agent(), { method: 'POST', body: '{"text":"slow"}' });
    await waitFor(() => rig.backend!.held === 1);

    const second = await ca.issue('second');
    await install(second);
    const reloaded = await hangUp(RELOADED);
    expect(reloaded).toMatchObject({ certificate: { fingerprint256: second.fingerprint256, validTo: expect.any(String) } });

    rig.backend!.answerNext();
    expect((await inFlight).status).toBe(200);
    const after = send(`${url}/new_request`, kept, { method: 'POST', body: '{"text":"again"}' });
    await waitFor(() => rig.backend!.held === 1);
    rig.backend!.answerNext();
    const answer = await after;
    expect(answer.status).toBe(200);
    // The same TLS connection as before the reload, still showing the certificate it was opened with.
    expect(answer.socket).toBe(before.socket);
    expect(answer.socket.getPeerCertificate().fingerprint256).toBe(first.fingerprint256);
    expect(await fingerprintOf(url, ca.pem)).toBe(second.fingerprint256);
    expect(logged(REFUSED)).toEqual([]);
  });

  it('keeps everything as it was when the new key does not match: the old certificate, the old client keys, an error logged', async () => {
    const { first } = await start({ clientKeys: keys(['keep', KEEP]) });
    const url = rig.orchestrator!.url;
    const [other, another] = [await ca.issue('other'), await ca.issue('another')];
    await copyFile(other.certFile, served.certFile);
    await copyFile(another.keyFile, served.keyFile);
    // The same reload would also add a key: it must not be half applied.
    await writeConfig({ clientKeys: keys(['keep', KEEP], ['added', ADDED]) });

    const refused = await hangUp(REFUSED);
    expect(refused).toMatchObject({ level: 50, err: { code: 'TLS_INVALID' } });
    expect(await fingerprintOf(url, ca.pem)).toBe(first.fingerprint256);
    const client = agent();
    expect((await send(`${url}/new_request`, client, { method: 'POST', key: KEEP, body: '{}' })).status).toBe(200);
    expect((await send(`${url}/new_request`, client, { method: 'POST', key: ADDED, body: '{}' })).status).toBe(401);
    expect(logged(RELOADED)).toEqual([]);
  });

  it('adds and removes client keys: the removed one gets 401, the new one works, the unchanged one never fails; restart-only keys are named', async () => {
    await start({ clientKeys: keys(['keep', KEEP], ['gone', GONE]), maxQueue: 100 });
    const url = rig.orchestrator!.url;
    const client = agent();
    expect((await send(`${url}/new_request`, client, { method: 'POST', key: GONE, body: '{}' })).status).toBe(200);
    expect((await send(`${url}/new_request`, client, { method: 'POST', key: ADDED, body: '{}' })).status).toBe(401);

    // The unchanged key sends all along, on its own kept-alive connection.
    const statuses: number[] = [];
    let sending = true;
    const steady = agent();
    const loop = (async () => {
      while (sending) statuses.push((await send(`${url}/new_request`, steady, { method: 'POST', key: KEEP, body: '{}' })).status);
    })();
    await waitFor(() => statuses.length >= 3);
    await writeConfig({ clientKeys: keys(['keep', KEEP], ['added', ADDED]), maxQueue: 50 });
    const reloaded = await hangUp(RELOADED);
    const seenAtReload = statuses.length;
    await waitFor(() => statuses.length >= seenAtReload + 3);
    sending = false;
    await loop;

    expect(reloaded).toMatchObject({ clientKeys: { added: ['added'], removed: ['gone'], changed: [] } });
    expect(logged('config keys changed that take effect only after a restart: their running values are kept')).toEqual([expect.objectContaining({ level: 40, keys: ['maxQueue'] })]);
    expect(statuses.every((s) => s === 200), JSON.stringify(statuses)).toBe(true);
    const gone = await send(`${url}/new_request`, client, { method: 'POST', key: GONE, body: '{}' });
    expect(gone.status).toBe(401);
    expect(JSON.parse(gone.body)).toMatchObject({ error: 'UNAUTHORIZED' });
    expect((await send(`${url}/new_request`, client, { method: 'POST', key: ADDED, body: '{}' })).status).toBe(200);
    for (const key of [KEEP, GONE, ADDED]) expect(rig.orchestrator!.output.stdout).not.toContain(key);
  });

  it('keeps the running config when the config file no longer parses, and logs why', async () => {
    await start({ clientKeys: keys(['keep', KEEP]) });
    await writeFile(configFile(), '{"clientKeys": [');
    expect(await hangUp(REFUSED)).toMatchObject({ err: { code: 'CONFIG_INVALID' } });
    expect((await send(`${rig.orchestrator!.url}/new_request`, agent(), { method: 'POST', key: KEEP, body: '{}' })).status).toBe(200);
  });
});

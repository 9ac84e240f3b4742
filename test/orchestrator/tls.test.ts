import { mkdir, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Agent, request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyHash } from '../../orchestrator/src/access-control.js';
import { loadOrchestratorConfig } from '../../orchestrator/src/config.js';
import { capturingLogger } from '../helpers/captured-log.js';
import { startBackend } from '../helpers/backend.js';
import { createTestCa, type TestCa } from '../helpers/certificates.js';
import { useTempCluster } from '../helpers/cluster.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { readState, runOrchestrator } from '../helpers/orchestrator-process.js';
import { raw } from '../helpers/raw-http.js';
import { waitFor } from '../helpers/wait-for.js';

let ca: TestCa;
beforeEach(async () => {
  ca = await createTestCa();
});
afterEach(async () => {
  await ca.cleanup();
});

/** The outcome of a bare TLS handshake with 127.0.0.1:`port`: the protocol agreed, or the client's error code. */
function handshake(port: number, options: ConnectionOptions): Promise<{ protocol: string | null } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...options }, () => {
      resolve({ protocol: socket.getProtocol() });
      socket.end();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
  });
}

/** A TLS client offering at most `version`; OpenSSL 3 offers nothing below TLS 1.2 at its default security level. */
const upTo = (version: 'TLSv1.1' | 'TLSv1.2'): ConnectionOptions => ({ minVersion: 'TLSv1', maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' });

describe('the orchestrator over HTTPS', () => {
  const rig = useRig();

  async function serve(overrides: Record<string, unknown> = {}, log = capturingLogger().log) {
    const cert = await ca.issue('server');
    rig.backends = [await startBackend('b1')];
    rig.running = await startOrchestrator(rig.backends, { tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile, ...overrides }, log);
    return { cert, port: Number(new URL(rig.running.url).port) };
  }

  it('serves /new_request to a client that verifies the certificate against the test CA; the container sees x-forwarded-proto https', async () => {
    await serve();
    expect(rig.running!.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const verifying = new Agent({ connect: { ca: ca.pem } });
    try {
      const response = await request(`${rig.running!.url}/new_request`, { method: 'POST', body: '{"text":"x"}', headers: { 'content-type': 'application/json' }, dispatcher: verifying });
      expect(response.statusCode).toBe(200);
      expect(await response.body.json()).toMatchObject({ backend: 'b1' });
    } finally {
      await verifying.close();
    }
    expect(rig.backends[0]!.stats.last!.headers['x-forwarded-proto']).toBe('https');
    // What `npm run status` and the load tool find: the https address.
    expect((await readState(rig.running!.statePath)).orchestrator?.url).toBe(rig.running!.url);
  });

  it('fails a client that does not trust the CA: the certificate cannot be verified', async () => {
    await serve();
    await expect(request(`${rig.running!.url}/health`)).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  it('refuses a client that offers TLS 1.1 at most, and serves one that offers TLS 1.2', async () => {
    const { port } = await serve();
    // The server's protocol_version alert: the client was refused by the server, not by its own settings.
    expect(await handshake(port, { ...upTo('TLSv1.1'), ca: ca.pem })).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    expect(await handshake(port, { ...upTo('TLSv1.2'), ca: ca.pem })).toEqual({ protocol: 'TLSv1.2' });
    const status = await new Promise<number | undefined>((resolve, reject) => {
      httpsRequest(`${rig.running!.url}/health`, { ca: ca.pem, maxVersion: 'TLSv1.2' }, (res) => resolve(res.resume().statusCode)).on('error', reject).end();
    });
    expect(status).toBe(200);
  });

  it('refuses TLS 1.2 when tlsMinVersion is TLSv1.3', async () => {
    const { port } = await serve({ tlsMinVersion: 'TLSv1.3' });
    expect(await handshake(port, { ...upTo('TLSv1.2'), ca: ca.pem })).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    expect(await handshake(port, { ca: ca.pem })).toEqual({ protocol: 'TLSv1.3' });
  });

  it('answers plain HTTP on its port with no HTTP answer at all', async () => {
    await serve();
    const { answer } = await raw(rig.running!.url, ['GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n']);
    expect(answer).not.toContain('HTTP/');
    expect(answer).not.toContain('{');
  });

  it('logs failed handshakes a few a second and counts the rest, never one line each', async () => {
    const { log, entries } = capturingLogger();
    const { port } = await serve({}, log);
    const failures = 30;
    for (let i = 0; i < failures; i++) expect(await handshake(port, upTo('TLSv1.1'))).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    await waitFor(() => entries().some((e) => e.msg === 'more TLS handshakes failed than logged one by one'), 3_000, 'the count of the handshakes not logged');
    const lines = entries().filter((e) => e.msg === 'TLS handshake failed');
    const summary = entries().find((e) => e.msg === 'more TLS handshakes failed than logged one by one') as { rejected: Record<string, number> };
    expect(lines.length).toBeLessThan(failures);
    expect(lines[0]).toMatchObject({ remote: '127.0.0.1', error: 'ERR_SSL_UNSUPPORTED_PROTOCOL' });
    expect(lines.length + Object.values(summary.rejected).reduce((a, b) => a + b, 0)).toBe(failures);
  });

  it('warns at start when the certificate expires within 14 days, and when it has expired', async () => {
    for (const [days, msg] of [
      [7, 'the TLS certificate expires within 14 days: renew it and send SIGHUP'],
      [-1, 'the TLS certificate has expired: renew it and send SIGHUP'],
    ] as const) {
      const { log, entries } = capturingLogger();
      const cert = await ca.issue(`days${days}`, { days });
      rig.backends.push(await startBackend(`b${days}`));
      const running = await startOrchestrator(rig.backends.slice(-1), { tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile }, log);
      await running.close();
      expect(entries().filter((e) => e.level === 40 && String(e.msg).includes('TLS certificate'))).toEqual([
        expect.objectContaining({ msg, certificate: expect.objectContaining({ fingerprint256: cert.fingerprint256 }) }),
      ]);
    }
    const { log, entries } = capturingLogger();
    await serve({}, log);
    expect(entries().filter((e) => String(e.msg).includes('TLS certificate'))).toEqual([]);
  });
});

describe('the exposure warning', () => {
  const rig = useRig();
  const infer = { name: 'app', sha256: keyHash('orch_app-EXPOSURE-0123456789abcdef'), scopes: ['infer'] };
  const read = { name: 'prometheus', sha256: keyHash('orch_prom-EXPOSURE-0123456789abcdef'), scopes: ['read'] };

  /** The EXPOSED lines an orchestrator over one backend logs from its start to its stop. */
  async function exposedLines(overrides: Record<string, unknown>): Promise<Array<Record<string, unknown>>> {
    const { log, entries } = capturingLogger();
    rig.backends.push(await startBackend(`b${rig.backends.length}`));
    rig.running = await startOrchestrator(rig.backends.slice(-1), overrides, log);
    await rig.running.close();
    rig.running = undefined;
    return entries().filter((e) => String(e.msg).startsWith('EXPOSED:'));
  }

  it('logs one loud line on an address other machines reach, naming each open surface and the setting that closes it', async () => {
    // Listening on every interface is the case under test; the test itself sends nothing anywhere.
    const lines = await exposedLines({ host: '0.0.0.0' });
    expect(lines).toEqual([expect.objectContaining({ level: 40, open: [expect.stringContaining('clientKeys'), expect.stringContaining('read scope'), expect.stringContaining('tlsCertFile')] })]);
  });

  it('logs it again when a reload drops the last key of a scope, and not while the reload keeps every scope guarded', async () => {
    const { log, entries } = capturingLogger();
    const cert = await ca.issue('server');
    const guarded = loadOrchestratorConfig({ env: {}, flags: { host: '0.0.0.0', clientKeys: [infer, read], tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile } });
    rig.backends.push(await startBackend(`b${rig.backends.length}`));
    rig.running = await startOrchestrator(rig.backends.slice(-1), { host: '0.0.0.0', clientKeys: [infer, read], tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile }, log);
    const exposed = () => entries().filter((e) => String(e.msg).startsWith('EXPOSED:'));
    rig.running.orchestrator.reload(guarded);
    expect(exposed()).toEqual([]);
    rig.running.orchestrator.reload({ ...guarded, clientKeys: guarded.clientKeys.slice(0, 1) });
    expect(exposed()).toEqual([expect.objectContaining({ level: 40, open: [expect.stringContaining('read scope')] })]);
  });

  it('logs nothing on loopback, or when keys guard both scopes and TLS is on', async () => {
    expect(await exposedLines({})).toEqual([]);
    const cert = await ca.issue('server');
    expect(await exposedLines({ host: '0.0.0.0', clientKeys: [infer, read], tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile })).toEqual([]);
  });
});

describe('npm start with TLS files it cannot use', () => {
  const cluster = useTempCluster(1);

  /** Each case: the cert and key files to give, made in the CA's folder. */
  const cases: Array<{ name: string; files: (ca: TestCa) => Promise<{ cert: string; key: string; named: string }> }> = [
    { name: 'a certificate file that does not exist', files: async (ca) => ({ cert: `${ca.dir}/missing.pem`, key: (await ca.issue('s')).keyFile, named: `${ca.dir}/missing.pem` }) },
    {
      name: 'a key file it cannot read (a directory)',
      files: async (ca) => {
        await mkdir(`${ca.dir}/key-dir`);
        return { cert: (await ca.issue('s')).certFile, key: `${ca.dir}/key-dir`, named: `${ca.dir}/key-dir` };
      },
    },
    {
      name: 'a certificate file that is not PEM',
      files: async (ca) => {
        await writeFile(`${ca.dir}/junk.pem`, 'not a certificate\n');
        return { cert: `${ca.dir}/junk.pem`, key: (await ca.issue('s')).keyFile, named: `${ca.dir}/junk.pem` };
      },
    },
    { name: 'a key file that holds a certificate', files: async (ca) => ({ cert: (await ca.issue('s')).certFile, key: ca.caFile, named: ca.caFile }) },
    {
      name: 'the key of another certificate',
      files: async (ca) => {
        const [a, b] = [await ca.issue('a'), await ca.issue('b')];
        return { cert: a.certFile, key: b.keyFile, named: b.keyFile };
      },
    },
    {
      name: 'an RSA key of 1024 bits',
      files: async (ca) => {
        const weak = await ca.issue('weak', { key: 'rsa:1024' });
        return { cert: weak.certFile, key: weak.keyFile, named: weak.keyFile };
      },
    },
  ];

  it.each(cases)('refuses $name: one line naming the file, exit 1, before reading the state', async ({ files }) => {
    const { cert, key, named } = await files(ca);
    const result = await runOrchestrator(['--port', '0', '--state-path', cluster.statePath, '--tls-cert-file', cert, '--tls-key-file', key]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).not.toContain('orchestrator listening');
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([expect.stringMatching(/^error: .*\[TLS_INVALID\]$/)]);
    expect(lines[0]).toContain(named);
  });

  it('starts with an RSA key of 2048 bits', async () => {
    const rsa = await ca.issue('rsa', { key: 'rsa:2048' });
    // Past the TLS check, it stops at the missing state file: proof that the files passed.
    const result = await runOrchestrator(['--port', '0', '--state-path', cluster.statePath, '--tls-cert-file', rsa.certFile, '--tls-key-file', rsa.keyFile]);
    expect(result.stderr).toMatch(/\[INVENTORY_INVALID\]$/m);
  });
});

import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';

/** A key algorithm as `openssl req -newkey` takes it. */
export type KeyKind = 'ec' | 'rsa:1024' | 'rsa:2048';

/** A server certificate and its key, as files. */
export interface IssuedCertificate {
  certFile: string;
  keyFile: string;
  /** SHA-256 fingerprint as a TLS peer certificate's `fingerprint256` shows it. */
  fingerprint256: string;
}

/** A throwaway certificate authority in a temp folder, and the server certificates it signs. */
export interface TestCa {
  dir: string;
  /** The CA certificate (PEM): what a verifying client trusts. */
  pem: string;
  caFile: string;
  /** A certificate for 127.0.0.1 (SAN IP:127.0.0.1) valid for `days` (negative: already expired). */
  issue(name: string, options?: { days?: number; key?: KeyKind }): Promise<IssuedCertificate>;
  cleanup(): Promise<void>;
}

const newKey = (kind: KeyKind): string[] => (kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', kind]);

/** Make a CA with /usr/bin/openssl in a new temp folder. */
export async function createTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'test-ca-'));
  const caFile = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  await run(OPENSSL, ['req', '-x509', ...newKey('ec'), '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=orchestrator test CA']);
  const extFile = join(dir, 'server.ext');
  await writeFile(extFile, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  return {
    dir,
    caFile,
    pem: await readFile(caFile, 'utf8'),
    async issue(name, options = {}) {
      const keyFile = join(dir, `${name}.key`);
      const certFile = join(dir, `${name}.pem`);
      const csr = join(dir, `${name}.csr`);
      await run(OPENSSL, ['req', ...newKey(options.key ?? 'ec'), '-nodes', '-keyout', keyFile, '-out', csr, '-subj', '/CN=127.0.0.1']);
      const days = String(options.days ?? 30);
      await run(OPENSSL, ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(Date.now()), '-out', certFile, '-days', days, '-extfile', extFile]);
      return { certFile, keyFile, fingerprint256: new X509Certificate(await readFile(certFile)).fingerprint256 };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

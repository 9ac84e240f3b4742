import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from '../../common/src/logger.js';
import type { OrchestratorConfig } from './config.js';
import { TlsInvalidError } from './errors.js';

/** What the HTTPS server is made from: the files and the TLS floor. */
export type TlsSettings = Pick<OrchestratorConfig, 'tlsCertFile' | 'tlsKeyFile' | 'tlsMinVersion'>;

/** A certificate and key checked to make a server's secure context. */
export interface ServerCertificate {
  /** For https.createServer and server.setSecureContext; Node's default ciphers. */
  readonly context: SecureContextOptions;
  /** SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it. */
  readonly fingerprint256: string;
  /** End of validity (notAfter). */
  readonly validTo: Date;
  readonly subjectAltName: string | undefined;
}

/** A certificate this close to its end is warned about, at start and at each reload. */
export const EXPIRY_WARNING_MS = 14 * 24 * 3_600_000;
/** RSA keys shorter than this are refused (NIST SP 800-131A). */
const MIN_RSA_BITS = 2048;

/**
 * Read and check the certificate chain and key of `settings`: readable PEM files, a key that
 * matches the certificate, no RSA key under 2048 bits. Undefined without them (plain HTTP).
 * Throws TlsInvalidError naming the key and the file; never the key's content.
 */
export function loadServerCertificate(settings: TlsSettings): ServerCertificate | undefined {
  if (settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined) return undefined;
  const certPem = readPem('tlsCertFile', settings.tlsCertFile);
  const keyPem = readPem('tlsKeyFile', settings.tlsKeyFile);
  let leaf: X509Certificate;
  try {
    // The first certificate of a chain file (certbot's fullchain.pem) is the server's own.
    leaf = new X509Certificate(certPem);
  } catch (error) {
    throw new TlsInvalidError(`tlsCertFile ${settings.tlsCertFile}: not a PEM certificate (${(error as Error).message})`, error);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new TlsInvalidError(`tlsKeyFile ${settings.tlsKeyFile}: not an unencrypted PEM private key (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`, error);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new TlsInvalidError(`tlsKeyFile ${settings.tlsKeyFile} is not the key of the certificate in tlsCertFile ${settings.tlsCertFile}`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && bits !== undefined && bits < MIN_RSA_BITS) {
    throw new TlsInvalidError(`tlsKeyFile ${settings.tlsKeyFile}: an RSA key of ${bits} bits; expected at least ${MIN_RSA_BITS}`);
  }
  return { context: { cert: certPem, key: keyPem, minVersion: settings.tlsMinVersion }, fingerprint256: leaf.fingerprint256, validTo: new Date(leaf.validTo), subjectAltName: leaf.subjectAltName };
}

/** What the log says of a certificate: never its key. */
export const describeCertificate = (c: ServerCertificate) => ({ fingerprint256: c.fingerprint256, validTo: c.validTo.toISOString(), subjectAltName: c.subjectAltName });

/** Warn when `certificate` has expired or ends within EXPIRY_WARNING_MS: clients will soon refuse it. */
export function warnOnExpiry(log: Logger, certificate: ServerCertificate, nowMs = Date.now()): void {
  const leftMs = certificate.validTo.getTime() - nowMs;
  if (leftMs >= EXPIRY_WARNING_MS) return;
  const days = Math.floor(leftMs / 86_400_000);
  log.warn({ certificate: describeCertificate(certificate), daysLeft: days }, leftMs <= 0 ? 'the TLS certificate has expired: renew it and send SIGHUP' : 'the TLS certificate expires within 14 days: renew it and send SIGHUP');
}

function readPem(key: 'tlsCertFile' | 'tlsKeyFile', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TlsInvalidError(`${key} ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`, error);
  }
}

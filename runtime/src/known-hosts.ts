import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** One usable line of an OpenSSH known_hosts file. */
export interface KnownHost {
  /** `@revoked` lines name keys that must be refused; `@cert-authority` lines are skipped (no certificates here). */
  revoked: boolean;
  /** The host field: comma-separated patterns (`host`, `[host]:port`, `*.example`, `!bad`), or one hashed `|1|salt|hash` entry. */
  hosts: string;
  /** Key type as written, e.g. `ssh-ed25519`. */
  keyType: string;
  /** The public key in SSH wire format (what the server sends during key exchange). */
  key: Buffer;
}

/** What a known_hosts file says of the key a server presented. */
export type HostKeyVerdict = 'trusted' | 'unknown' | 'mismatch';

/** Parses known_hosts text; comments, blank, malformed and `@cert-authority` lines are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHost[] {
  const entries: KnownHost[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let revoked = false;
    if (fields[0]!.startsWith('@')) {
      const marker = fields.shift();
      if (marker !== '@revoked') continue;
      revoked = true;
    }
    const [hosts, keyType, base64] = fields;
    if (!hosts || !keyType || !base64) continue;
    const key = Buffer.from(base64, 'base64');
    if (key.length === 0 || wireKeyType(key) !== keyType) continue;
    entries.push({ revoked, hosts, keyType, key });
  }
  return entries;
}

/** Reads and parses a known_hosts file; a missing file knows no host. */
export async function readKnownHosts(path: string): Promise<KnownHost[]> {
  try {
    return parseKnownHosts(await readFile(path, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` elsewhere. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host.toLowerCase() : `[${host.toLowerCase()}]:${port}`;
}

/**
 * Checks a server's key against the entries, like OpenSSH with StrictHostKeyChecking=yes: trusted when
 * a non-revoked entry for the host holds exactly this key; mismatch when the key is revoked or the host
 * is known with another key of the same type; otherwise unknown.
 */
export function checkHostKey(entries: KnownHost[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = knownHostName(host, port);
  const type = wireKeyType(key);
  if (entries.some((entry) => entry.revoked && hostMatches(entry.hosts, name) && sameKey(entry.key, key))) return 'mismatch';
  const forHost = entries.filter((entry) => !entry.revoked && hostMatches(entry.hosts, name));
  if (forHost.some((entry) => sameKey(entry.key, key))) return 'trusted';
  return forHost.some((entry) => entry.keyType === type) ? 'mismatch' : 'unknown';
}

/**
 * Host-key algorithms to offer, those the file knows for this host first (OpenSSH does the same), so a
 * server with several keys presents the one we can check.
 */
export function preferredHostKeyAlgorithms(entries: KnownHost[], host: string, port: number, supported: readonly string[]): string[] {
  const name = knownHostName(host, port);
  const knownTypes = new Set(entries.filter((entry) => !entry.revoked && hostMatches(entry.hosts, name)).map((entry) => entry.keyType));
  const known = supported.filter((algorithm) => knownTypes.has(keyTypeOfAlgorithm(algorithm)));
  return [...known, ...supported.filter((algorithm) => !known.includes(algorithm))];
}

/** `SHA256:...` fingerprint as `ssh-keygen -l` prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** Key type named inside a wire-format key (a length-prefixed string), or '' when malformed. */
export function wireKeyType(key: Buffer): string {
  if (key.length < 4) return '';
  const length = key.readUInt32BE(0);
  return length > 0 && 4 + length <= key.length ? key.toString('latin1', 4, 4 + length) : '';
}

function keyTypeOfAlgorithm(algorithm: string): string {
  // RSA keys are signed with any of these algorithms; the key itself is always `ssh-rsa`.
  return algorithm === 'rsa-sha2-256' || algorithm === 'rsa-sha2-512' ? 'ssh-rsa' : algorithm;
}

function sameKey(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether a host field covers the name: any positive pattern matches and no negated one does. */
function hostMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) return hashedHostMatches(hosts, name);
  let matched = false;
  for (const pattern of hosts.toLowerCase().split(',')) {
    const negated = pattern.startsWith('!');
    if (!globMatches(negated ? pattern.slice(1) : pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as written by `ssh-keygen -H` or HashKnownHosts. */
function hashedHostMatches(hosts: string, name: string): boolean {
  const [, , salt, hash] = hosts.split('|');
  if (!salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return sameKey(expected, actual);
}

/** OpenSSH patterns: `*` any run of characters, `?` exactly one. */
function globMatches(pattern: string, name: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(name);
}

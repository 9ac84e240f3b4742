import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkHostKey, fingerprint, knownHostName, parseKnownHosts, preferredHostKeyAlgorithms, wireKeyType } from '../../runtime/src/known-hosts.js';

/** An SSH wire-format key: length-prefixed type, then length-prefixed key bytes (enough for matching). */
function wireKey(type: string, body: Buffer): Buffer {
  const field = (bytes: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  return Buffer.concat([field(Buffer.from(type)), field(body)]);
}
function ed25519(): Buffer {
  const { publicKey } = generateKeyPairSync('ed25519');
  return wireKey('ssh-ed25519', Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url'));
}
const line = (hosts: string, key: Buffer) => `${hosts} ${wireKeyType(key)} ${key.toString('base64')}`;
const hashed = (name: string) => {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
};

describe('known_hosts', () => {
  const key = ed25519();
  const other = ed25519();
  const rsa = wireKey('ssh-rsa', randomBytes(64));

  it('names hosts as OpenSSH looks them up: bare on port 22, [host]:port elsewhere', () => {
    expect(knownHostName('Example.COM', 22)).toBe('example.com');
    expect(knownHostName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('skips comments, blank, malformed and @cert-authority lines, and keeps @revoked ones', () => {
    const entries = parseKnownHosts(
      [
        '# comment',
        '',
        'only-a-host',
        // The declared type must be the key's own.
        `host ssh-rsa ${key.toString('base64')}`,
        `@cert-authority ${line('*', key)}`,
        `@revoked ${line('*', other)}`,
        `${line('a,b', key)} a comment`,
      ].join('\n'),
    );

    expect(entries.map(({ revoked, hosts }) => ({ revoked, hosts }))).toEqual([
      { revoked: true, hosts: '*' },
      { revoked: false, hosts: 'a,b' },
    ]);
  });

  it('trusts the listed key, for plain, [host]:port, wildcard and hashed entries', () => {
    const entries = parseKnownHosts([line('10.0.0.1', key), line('[127.0.0.1]:2222', key), line('*.example.com', key), line(hashed('[h.internal]:2200'), key)].join('\n'));

    expect(checkHostKey(entries, '10.0.0.1', 22, key)).toBe('trusted');
    expect(checkHostKey(entries, '127.0.0.1', 2222, key)).toBe('trusted');
    expect(checkHostKey(entries, 'a.example.com', 22, key)).toBe('trusted');
    expect(checkHostKey(entries, 'h.internal', 2200, key)).toBe('trusted');
  });

  it('does not let an entry for port 22 or another port vouch for this port, nor a negated pattern', () => {
    const entries = parseKnownHosts([line('127.0.0.1', key), line('[127.0.0.1]:2223', key), line('*.example.com,!bad.example.com', key)].join('\n'));

    expect(checkHostKey(entries, '127.0.0.1', 2222, key)).toBe('unknown');
    expect(checkHostKey(entries, 'bad.example.com', 22, key)).toBe('unknown');
    expect(checkHostKey(entries, 'h.internal', 2200, key)).toBe('unknown');
  });

  it('reports a mismatch for another key of the same type, or a revoked key; unknown when only other types are listed', () => {
    expect(checkHostKey(parseKnownHosts(line('host', other)), 'host', 22, key)).toBe('mismatch');
    expect(checkHostKey(parseKnownHosts([line('host', key), `@revoked ${line('*', key)}`].join('\n')), 'host', 22, key)).toBe('mismatch');
    expect(checkHostKey(parseKnownHosts(line('host', rsa)), 'host', 22, key)).toBe('unknown');
  });

  it('offers first the host-key algorithms of the keys known for the host', () => {
    const supported = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

    expect(preferredHostKeyAlgorithms(parseKnownHosts(line('[h]:2222', rsa)), 'h', 2222, supported)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
    ]);
    expect(preferredHostKeyAlgorithms([], 'h', 2222, supported)).toEqual(supported);
  });

  it('prints fingerprints like ssh-keygen -l', () => {
    expect(fingerprint(key)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});

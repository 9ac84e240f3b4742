import * as crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { AccessControl, KEY_PREFIX, keyHash, newClientKey } from '../../orchestrator/src/access-control.js';
import type { ClientKeyEntry } from '../../orchestrator/src/config.js';

// Every comparison goes through the real timingSafeEqual; the spy only counts them.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const APP = 'orch_app-key-0123456789abcdef';
const VIEWER = 'orch_viewer-key-0123456789abcdef';
const BOTH = 'orch_both-key-0123456789abcdef';

const entry = (name: string, key: string, scopes: ClientKeyEntry['scopes'], rate?: { ratePerSecond?: number; burst?: number }): ClientKeyEntry => ({
  name,
  sha256: keyHash(key),
  scopes,
  ...rate,
});

const KEYS = [entry('app', APP, ['infer']), entry('viewer', VIEWER, ['read']), entry('both', BOTH, ['infer', 'read'])];

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function access(clientKeys = KEYS, rate: { clientRatePerSecond?: number; clientBurst?: number } = {}, clock = { ms: 0 }): AccessControl {
  return new AccessControl({ clientKeys, clientRatePerSecond: rate.clientRatePerSecond ?? 0, clientBurst: rate.clientBurst }, () => clock.ms);
}

/** The code of what `call` throws. */
function codeOf(call: () => unknown): string | undefined {
  try {
    call();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe('AccessControl.authenticate', () => {
  it('names the key a Bearer or Basic credential carries, the scheme in any case', () => {
    const a = access();
    expect(a.authenticate(`Bearer ${APP}`, 'infer')).toBe('app');
    expect(a.authenticate(`bearer ${BOTH}`, 'read')).toBe('both');
    expect(a.authenticate(`BEARER ${BOTH}`, 'infer')).toBe('both');
    // A browser sends the key as the password; the user name is anything.
    expect(a.authenticate(basic('', VIEWER), 'read')).toBe('viewer');
    expect(a.authenticate(basic('me', VIEWER), 'read')).toBe('viewer');
    expect(a.authenticate(`basic ${Buffer.from(`x:${APP}`).toString('base64')}`, 'infer')).toBe('app');
  });

  it.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['a scheme alone', 'Bearer'],
    ['a scheme and spaces', 'Bearer   '],
    ['no scheme', APP],
    ['another scheme', `Token ${APP}`],
    ['a wrong key', `Bearer ${APP.slice(0, -1)}x`],
    ['a key one character short', `Bearer ${APP.slice(0, -1)}`],
    ['the key with a prefix', `Bearer x${APP}`],
    ['the key hash instead of the key', `Bearer ${keyHash(APP)}`],
    ['two keys', `Bearer ${APP} ${BOTH}`],
    ['two credentials', `Bearer ${APP}, Bearer ${BOTH}`],
    ['two keys with a comma', `Bearer ${APP},${BOTH}`],
    ['an over-long credential', `Bearer ${APP}${'a'.repeat(600)}`],
    ['a control character', `Bearer ${APP}\t`],
    ['Basic that is not base64', `Basic ${APP}`],
    ['Basic with junk around the base64', `Basic !${Buffer.from(`x:${APP}`).toString('base64')}!`],
    ['Basic without a colon', `Basic ${Buffer.from(APP).toString('base64')}`],
    ['Basic with an empty password', `Basic ${Buffer.from(`${APP}:`).toString('base64')}`],
    ['Basic with the key as user name', basic(APP, 'x')],
  ])('refuses %s with UNAUTHORIZED (401)', (_what, authorization) => {
    expect(codeOf(() => access().authenticate(authorization, 'infer'))).toBe('UNAUTHORIZED');
  });

  it('refuses a key without the scope with FORBIDDEN (403): a read key on the model, an infer key on the status', () => {
    const a = access();
    expect(codeOf(() => a.authenticate(`Bearer ${VIEWER}`, 'infer'))).toBe('FORBIDDEN');
    expect(codeOf(() => a.authenticate(`Bearer ${APP}`, 'read'))).toBe('FORBIDDEN');
  });

  it('compares the presented key with every configured hash, whichever matches or none', () => {
    const compare = vi.mocked(crypto.timingSafeEqual);
    const a = access();
    for (const authorization of [`Bearer ${APP}`, `Bearer ${BOTH}`, 'Bearer orch_nobody-0123456789abcdef']) {
      compare.mockClear();
      codeOf(() => a.authenticate(authorization, 'infer'));
      expect(compare).toHaveBeenCalledTimes(KEYS.length);
      // Each compares two SHA-256 digests: the same length whatever was presented.
      for (const [left, right] of compare.mock.calls) expect([(left as Buffer).length, (right as Buffer).length]).toEqual([32, 32]);
    }
  });

  it('refuses a key removed by a reload, and takes one added by it', () => {
    const a = access();
    const added = 'orch_new-key-0123456789abcdef';
    expect(a.reload({ clientKeys: [KEYS[1]!, entry('new', added, ['infer'])], clientRatePerSecond: 0, clientBurst: undefined })).toEqual({
      added: ['new'],
      removed: ['app', 'both'],
      changed: [],
    });
    expect(codeOf(() => a.authenticate(`Bearer ${APP}`, 'infer'))).toBe('UNAUTHORIZED');
    expect(a.authenticate(`Bearer ${added}`, 'infer')).toBe('new');
    expect(a.names()).toEqual(['viewer', 'new']);
  });

  it('guards a scope only while some key has it', () => {
    expect([access([]).guards('infer'), access([]).guards('read')]).toEqual([false, false]);
    const viewerOnly = access([KEYS[1]!]);
    expect([viewerOnly.guards('infer'), viewerOnly.guards('read')]).toEqual([false, true]);
    expect([access().guards('infer'), access().guards('read')]).toEqual([true, true]);
  });
});

describe('AccessControl.admit', () => {
  it('lets a burst through, then refuses RATE_LIMITED with the seconds until the next token; tokens come back at the rate', () => {
    const clock = { ms: 0 };
    const a = access([entry('app', APP, ['infer'], { ratePerSecond: 0.5, burst: 3 }), KEYS[2]!], {}, clock);
    for (let i = 0; i < 3; i++) a.admit('app');
    let refused: { code?: string; status?: number; retryAfterSeconds?: number } | undefined;
    try {
      a.admit('app');
    } catch (error) {
      refused = error as typeof refused;
    }
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', status: 429, retryAfterSeconds: 2 });
    // Another key (no rate) is not held back by this one.
    for (let i = 0; i < 10; i++) a.admit('both');
    clock.ms += 2_000;
    a.admit('app');
    expect(codeOf(() => a.admit('app'))).toBe('RATE_LIMITED');
  });

  it("takes the config's rate and burst for keys without their own", () => {
    const a = access(KEYS, { clientRatePerSecond: 1, clientBurst: 2 });
    a.admit('app');
    a.admit('app');
    expect(codeOf(() => a.admit('app'))).toBe('RATE_LIMITED');
  });
});

describe('newClientKey', () => {
  it('is the prefix and 32 random bytes in base64url, different each time', () => {
    const keys = Array.from({ length: 50 }, newClientKey);
    for (const key of keys) {
      expect(key.startsWith(KEY_PREFIX)).toBe(true);
      expect(Buffer.from(key.slice(KEY_PREFIX.length), 'base64url')).toHaveLength(32);
      expect(key.slice(KEY_PREFIX.length)).toMatch(/^[\w-]{43}$/);
    }
    expect(new Set(keys).size).toBe(keys.length);
    expect(keyHash(keys[0]!)).toMatch(/^[0-9a-f]{64}$/);
  });
});

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ClientKeyEntry, KeyScope, OrchestratorConfig } from './config.js';
import { KeyRequiredError, RateLimitedError, ScopeForbiddenError } from './errors.js';
import { TokenBucket } from './token-bucket.js';

/** What AccessControl reads from the config (all of it reloaded on SIGHUP). */
export type AccessSettings = Pick<OrchestratorConfig, 'clientKeys' | 'clientRatePerSecond' | 'clientBurst'>;

/** A configured key: its name, its hash, its scopes and its bucket (no rate: none). */
interface KeyEntry {
  readonly name: string;
  readonly hash: Buffer;
  readonly scopes: ReadonlySet<KeyScope>;
  readonly bucket: TokenBucket | undefined;
}

/** What a reload changed, by key name. */
export interface AccessChanges {
  added: string[];
  removed: string[];
  /** Same name, another hash, scopes or rate. */
  changed: string[];
}

/** Longest credential looked at; longer ones are refused before hashing. */
const MAX_CREDENTIAL_LENGTH = 512;

/** Standard base64 with its padding (a Basic credential). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The SHA-256 digest of `value`: what keys and tokens are compared as (equal lengths for timingSafeEqual). */
export const sha256 = (value: string): Buffer => createHash('sha256').update(value).digest();

/**
 * Who may call what: the configured client keys (hashed), each with its scopes and its token
 * bucket. A presented key is hashed and compared with every configured hash in constant time, so
 * neither a near miss nor which key matched shows in the time an answer takes.
 */
export class AccessControl {
  readonly #now: () => number;
  #keys: readonly KeyEntry[] = [];
  #guarded = new Set<KeyScope>();

  constructor(settings: AccessSettings, now: () => number = () => performance.now()) {
    this.#now = now;
    this.reload(settings);
  }

  /** Whether `scope` needs a key: some configured key has it. */
  guards(scope: KeyScope): boolean {
    return this.#guarded.has(scope);
  }

  /** The configured key names. */
  names(): string[] {
    return this.#keys.map((k) => k.name);
  }

  /**
   * The name of the key `authorization` carries, which must have `scope`: `Bearer <key>`, or
   * `Basic` with the key as password (what a browser sends for the dashboard). Throws
   * KeyRequiredError (401) for none, a malformed or an unknown key, ScopeForbiddenError (403)
   * for a key without `scope`.
   */
  authenticate(authorization: string | undefined, scope: KeyScope): string {
    const credential = authorization === undefined ? undefined : credentialOf(authorization);
    if (credential === undefined) throw new KeyRequiredError(scope);
    const presented = sha256(credential);
    let match: KeyEntry | undefined;
    // No early exit: every configured hash is compared, whichever matches.
    for (const key of this.#keys) if (timingSafeEqual(presented, key.hash)) match = key;
    if (!match) throw new KeyRequiredError(scope);
    if (!match.scopes.has(scope)) throw new ScopeForbiddenError(scope);
    return match.name;
  }

  /** Count one request against key `name`'s rate; throws RateLimitedError (429) when its bucket is empty. */
  admit(name: string): void {
    const bucket = this.#keys.find((k) => k.name === name)?.bucket;
    if (!bucket) return;
    const waitMs = bucket.take(this.#now());
    if (waitMs > 0) throw new RateLimitedError(bucket.ratePerSecond, bucket.burst, Math.max(1, Math.ceil(waitMs / 1000)));
  }

  /**
   * Take a new set of keys and rates. A key kept under its name keeps its bucket's tokens (a
   * reload is no way around a rate); a removed key is refused from now on.
   */
  reload(settings: AccessSettings): AccessChanges {
    const before = new Map(this.#keys.map((k) => [k.name, k]));
    const now = this.#now();
    const changes: AccessChanges = { added: [], removed: [], changed: [] };
    const keys = settings.clientKeys.map((entry): KeyEntry => {
      const old = before.get(entry.name);
      const hash = Buffer.from(entry.sha256, 'hex');
      const scopes = new Set(entry.scopes);
      const { rate, burst } = rateOf(entry, settings);
      const sameBucket = old?.bucket && old.bucket.ratePerSecond === rate && old.bucket.burst === burst;
      const bucket = rate === 0 ? undefined : sameBucket ? old!.bucket : new TokenBucket(rate, burst, now, old?.bucket?.tokens(now));
      if (!old) changes.added.push(entry.name);
      else if (!old.hash.equals(hash) || !sameScopes(old.scopes, scopes) || old.bucket?.ratePerSecond !== bucket?.ratePerSecond || old.bucket?.burst !== bucket?.burst) {
        changes.changed.push(entry.name);
      }
      return { name: entry.name, hash, scopes, bucket };
    });
    const kept = new Set(keys.map((k) => k.name));
    changes.removed = [...before.keys()].filter((name) => !kept.has(name));
    this.#keys = keys;
    this.#guarded = new Set(keys.flatMap((k) => [...k.scopes]));
    return changes;
  }
}

/** A key's rate and burst: its own, else the config's; burst defaults to the rate rounded up. */
function rateOf(entry: ClientKeyEntry, settings: AccessSettings): { rate: number; burst: number } {
  const rate = entry.ratePerSecond ?? settings.clientRatePerSecond;
  return { rate, burst: entry.burst ?? settings.clientBurst ?? Math.max(1, Math.ceil(rate)) };
}

const sameScopes = (a: ReadonlySet<KeyScope>, b: ReadonlySet<KeyScope>): boolean => a.size === b.size && [...a].every((s) => b.has(s));

/** The key in an Authorization value: `Bearer <key>` or `Basic base64(user:key)`; the scheme is case-insensitive (RFC 9110 section 11.1). */
function credentialOf(authorization: string): string | undefined {
  if (authorization.length > MAX_CREDENTIAL_LENGTH) return undefined;
  const match = /^(Bearer|Basic) +([\x21-\x7e]+) *$/i.exec(authorization);
  if (!match) return undefined;
  if (match[1]!.toLowerCase() === 'bearer') return match[2];
  // Node's base64 decoder skips what is not base64: check the alphabet and padding first.
  if (!BASE64.test(match[2]!)) return undefined;
  const decoded = Buffer.from(match[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 || colon === decoded.length - 1 ? undefined : decoded.slice(colon + 1);
}

/** What a new client key starts with, so a leaked one is recognised for what it is (secret scanners, logs). */
export const KEY_PREFIX = 'orch_';

/** A key the orchestrator can take: printable ASCII without spaces (it goes in a header), long enough not to be guessed, short enough for the header limit. */
export const CLIENT_KEY_SYNTAX = /^[\x21-\x7e]{16,256}$/;

/** A new client key: KEY_PREFIX and 32 random bytes, base64url (43 characters). */
export const newClientKey = (): string => KEY_PREFIX + randomBytes(32).toString('base64url');

/** The SHA-256 (hex) the config holds for `key`. */
export const keyHash = (key: string): string => sha256(key).toString('hex');

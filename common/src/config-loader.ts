import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';

/** Where a config key's value came from, so errors can say it. */
type Origin = 'default' | 'file' | 'env' | 'flag';

export interface ConfigSources {
  /** Path of an optional JSON config file (keys as in the schema). */
  file?: string | undefined;
  /** Environment; only `prefix`+SNAKE_CASE(key) variables are read. */
  env?: Record<string, string | undefined>;
  /** Prefix of environment variables, e.g. `ORCH_`. */
  envPrefix?: string;
  /** Values from command-line flags, keyed by schema key (camelCase). */
  flags?: Record<string, unknown>;
}

const toSnake = (key: string): string => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/** `queueTimeoutMs` -> `queue-timeout-ms`: the flag spelling of a config key. */
export const toKebab = (key: string): string => key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** The environment variable that sets `key`. */
export const envName = (prefix: string, key: string): string => prefix + toSnake(key);

/** Config keys whose values are secrets. */
const SECRET_KEY = /token|secret|password|privateKey/i;

/**
 * Parse one program's flat config from file, env and flags (later wins) into a frozen object.
 * String values from env and flags are coerced by the schema (use `intFrom`/`boolFrom`).
 */
export function loadConfig<S extends z.ZodObject>(schema: S, sources: ConfigSources): Readonly<z.infer<S>> {
  const keys = Object.keys(schema.shape);
  const merged: Record<string, unknown> = {};
  const origin: Record<string, Origin> = {};

  if (sources.file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(sources.file, 'utf8'));
    } catch (error) {
      // Not a parser's message: it quotes the text around the fault, which may be a secret.
      const why = error instanceof SyntaxError ? 'not valid JSON' : ((error as NodeJS.ErrnoException).code ?? (error as Error).name);
      throw new ConfigError(`config file ${sources.file}: cannot read it as JSON (${why})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${sources.file}: expected a JSON object, found ${Array.isArray(parsed) ? 'an array' : typeof parsed}`);
    }
    for (const [key, value] of Object.entries(parsed)) {
      if (!keys.includes(key)) throw new ConfigError(`config file ${sources.file}: unknown key "${key}" (known: ${keys.join(', ')})`);
      merged[key] = value;
      origin[key] = 'file';
    }
  }
  if (sources.env && sources.envPrefix !== undefined) {
    for (const key of keys) {
      const value = sources.env[envName(sources.envPrefix, key)];
      if (value !== undefined && value !== '') {
        merged[key] = value;
        origin[key] = 'env';
      }
    }
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value === undefined) continue;
    if (!keys.includes(key)) throw new ConfigError(`unknown option --${toKebab(key)}`);
    merged[key] = value;
    origin[key] = 'flag';
  }

  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.map(String).join('.') || '(root)';
    const top = String(issue.path[0] ?? '');
    const from = describeOrigin(origin[top] ?? 'default', top, sources.envPrefix);
    // A secret's value never goes into an error message (errors end up in logs and terminals).
    const received = !(top in merged) ? 'nothing' : SECRET_KEY.test(top) ? 'a value (not shown: secret)' : JSON.stringify(merged[top]);
    throw new ConfigError(`config key "${key}"${from}: ${issue.message}; received ${received}`);
  }
  return Object.freeze(result.data);
}

function describeOrigin(origin: Origin, key: string, prefix: string | undefined): string {
  switch (origin) {
    case 'env':
      return ` (env ${envName(prefix ?? '', key)})`;
    case 'flag':
      return ` (flag --${toKebab(key)})`;
    case 'file':
      return ' (config file)';
    default:
      return '';
  }
}

/** An integer that may arrive as a string from env or flags. */
export const intFrom = (min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (value) => (typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value),
    z.number({ error: `expected an integer from ${min} to ${max}` }).int(`expected an integer from ${min} to ${max}`).min(min, `expected an integer from ${min} to ${max}`).max(max, `expected an integer from ${min} to ${max}`),
  );

/** A boolean that may arrive as `true/false/1/0/yes/no` from env or flags. */
export const boolFrom = () =>
  z.preprocess((value) => {
    if (typeof value !== 'string') return value;
    const v = value.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    return value;
  }, z.boolean({ error: 'expected a boolean (true/false, 1/0, yes/no)' }));

import { keyHash } from '../../orchestrator/src/access-control.js';
import type { KeyScope } from '../../orchestrator/src/config.js';
import { cleanEnv } from './orchestrator-process.js';

/** A client key a test gives a client, and the name and scopes the orchestrator knows it by. */
export interface TestKey {
  name: string;
  key: string;
  scopes: KeyScope[];
}

/** The orchestrator's environment for these keys: ORCH_CLIENT_KEYS holds their names, hashes and scopes, never a key. */
export const clientKeysEnv = (keys: readonly TestKey[]): { ORCH_CLIENT_KEYS: string } => ({
  ORCH_CLIENT_KEYS: JSON.stringify(keys.map(({ name, key, scopes }) => ({ name, sha256: keyHash(key), scopes }))),
});

/** The environment of a client tool (`npm run load`, `npm run status`): the test's, with ORCHESTRATOR_KEY set to `key`, or unset. */
export function toolEnv(key?: string): NodeJS.ProcessEnv {
  const { ORCHESTRATOR_KEY: _developers, ...env } = cleanEnv;
  return key === undefined ? env : { ...env, ORCHESTRATOR_KEY: key };
}

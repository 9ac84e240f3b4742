import { fileURLToPath } from 'node:url';

/**
 * EC2 refusing permissions inside a provisioning CLI a test starts. nock intercepts only in its own
 * process, so the CLI's Node preloads this module (NODE_OPTIONS, after tsx), which then denies what
 * the environment names (denyActions in ec2-intercept.ts). Importing it elsewhere loads no nock.
 */
const DENY_ENV = 'TEST_EC2_DENY';
const ENDPOINT_ENV = 'TEST_EC2_DENY_ENDPOINT';

/** The environment that makes a CLI see `actions` answered UnauthorizedOperation by the EC2 at `endpoint`. */
export function cliDenying(endpoint: string, actions: readonly string[]): Record<string, string> {
  return { NODE_OPTIONS: `--import tsx --import ${fileURLToPath(import.meta.url)}`, [DENY_ENV]: actions.join(','), [ENDPOINT_ENV]: endpoint };
}

const denied = process.env[DENY_ENV]?.split(',').filter(Boolean) ?? [];
const endpoint = process.env[ENDPOINT_ENV];
if (denied.length > 0 && endpoint) {
  const { denyActions } = await import('./ec2-intercept.js');
  denyActions(endpoint, denied);
}

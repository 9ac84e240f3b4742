import { BlockList, isIP } from 'node:net';
import type { AccessControl } from './access-control.js';
import type { OrchestratorConfig } from './config.js';

/** What a listening orchestrator leaves open, and whether only this machine can reach it. */
export interface Exposure {
  /** The host is a loopback address (127.0.0.0/8, ::1, localhost): nothing below is reachable from elsewhere. */
  loopback: boolean;
  /** One line per thing open to whoever can reach the address; empty when all is closed. */
  open: string[];
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether `host` (an address or a name to listen on) is loopback only; ::ffff:127.x counts. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (bare.toLowerCase() === 'localhost') return true;
  const family = isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * What the orchestrator leaves open with this config and these keys: the model without an infer
 * key, the cluster's inventory (/status, /metrics, /dashboard) without a read key, and keys, the
 * admin token and answers in clear without TLS. The orchestrator warns at start, and after a
 * reload, when the host is not loopback and something is open.
 */
export function exposureWarnings(config: Pick<OrchestratorConfig, 'host' | 'tlsCertFile' | 'adminToken'>, access: Pick<AccessControl, 'guards'>): Exposure {
  const open: string[] = [];
  if (!access.guards('infer')) open.push('inference is open: anyone who reaches this address may run the model (no client key has the infer scope; see clientKeys)');
  if (!access.guards('read')) {
    open.push("/status, /metrics and /dashboard are open: they show every worker's address and port (no client key has the read scope)");
  }
  if (config.tlsCertFile === undefined) {
    const secrets: string[] = [];
    if (access.guards('infer') || access.guards('read')) secrets.push('client keys');
    if (config.adminToken !== undefined) secrets.push('the admin token');
    open.push(`plain HTTP: requests and answers${secrets.length > 0 ? `, ${secrets.join(' and ')}` : ''} cross the network in clear (set tlsCertFile and tlsKeyFile)`);
  }
  return { loopback: isLoopback(config.host), open };
}

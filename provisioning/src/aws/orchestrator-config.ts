import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../../common/src/errors.js';
import { loadOrchestratorConfig, type OrchestratorConfig } from '../../../orchestrator/src/config.js';
import { loadServerCertificate } from '../../../orchestrator/src/tls.js';
import type { ProvisionConfig } from '../config.js';

/** Orchestrator keys provisioning sets on its instance itself, and how. */
const SET_BY_PROVISIONING: Readonly<Record<string, string>> = {
  host: 'it listens on 0.0.0.0 there',
  port: 'orchestratorPort sets it',
  statePath: 'its state is in the instance\'s state folder',
};

/** The operator's orchestrator config file (orchestratorConfig), checked here before anything is created in EC2. */
export interface OrchestratorConfigFile {
  /** Its keys as the file has them (the orchestrator's defaults apply to the rest); TLS paths still this machine's. */
  settings: Readonly<Record<string, unknown>>;
  /** The PEM files its tlsCertFile and tlsKeyFile name, read here; null for plain HTTP. */
  tls: { cert: Buffer; key: Buffer } | null;
}

/**
 * Read and check `config.orchestratorConfig` as the orchestrator would (loadOrchestratorConfig),
 * its TLS files included (loadServerCertificate), refusing the keys provisioning sets. Undefined
 * without one. Throws ConfigError, one line naming orchestratorConfig and the key; never a secret's value.
 */
export async function readOrchestratorConfig(config: ProvisionConfig): Promise<OrchestratorConfigFile | undefined> {
  const path = config.orchestratorConfig;
  if (path === undefined) return undefined;
  const fail = (message: string): ConfigError => new ConfigError(`config key "orchestratorConfig" (${path}): ${message}`);
  let parsed: OrchestratorConfig;
  try {
    parsed = loadOrchestratorConfig({ file: path });
    // What the orchestrator checks at start and on SIGHUP: files that fail here would fail there.
    loadServerCertificate(parsed);
  } catch (error) {
    throw fail((error as Error).message);
  }
  // The keys as the file has them (the loader read it as a JSON object just now).
  const settings = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  for (const [key, why] of Object.entries(SET_BY_PROVISIONING)) {
    if (key in settings) throw fail(`"${key}" is provisioning's to set (${why}); remove it from the file`);
  }
  if (parsed.tlsCertFile === undefined || parsed.tlsKeyFile === undefined) return Object.freeze({ settings, tls: null });
  const [cert, key] = await Promise.all([readFile(parsed.tlsCertFile), readFile(parsed.tlsKeyFile)]);
  return Object.freeze({ settings, tls: { cert, key } });
}

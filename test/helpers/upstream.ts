import { loadOrchestratorConfig } from '../../orchestrator/src/config.js';
import { upstreamOptionsFrom, type UpstreamClientOptions } from '../../orchestrator/src/upstream/upstream-client.js';

/** The upstream client's options at the config's defaults, with `overrides`. */
export const upstreamOptions = (overrides: Partial<UpstreamClientOptions> = {}): UpstreamClientOptions => ({
  ...upstreamOptionsFrom(loadOrchestratorConfig({ env: {} })),
  ...overrides,
});

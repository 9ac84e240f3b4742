import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ConfigError } from '../../common/src/errors.js';
import { loadOrchestratorConfig } from '../../orchestrator/src/config.js';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadOrchestratorConfig({ env });
  } catch (error) {
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);

describe('loadOrchestratorConfig', () => {
  it('defaults to port 8080, one request per container, replacement on and no autoscaling or admin API', () => {
    expect(loadOrchestratorConfig({ env: {} })).toMatchObject({
      port: 8080,
      containerConcurrency: 1,
      replaceUnhealthy: true,
      autoscalePolicy: 'none',
      minContainers: 1,
      scaleRules: [],
    });
    expect(loadOrchestratorConfig({ env: {} }).adminToken).toBeUndefined();
  });

  it("gives the upstream client today's limits by default, each settable", () => {
    expect(loadOrchestratorConfig({ env: {} })).toMatchObject({
      connectTimeoutMs: 2_000,
      upstreamIdleTimeoutMs: 4_000,
      upstreamMaxIdlePerContainer: 1025,
      upstreamBufferBytes: 65_536,
      upstreamMaxHeadBytes: 65_536,
      upstreamMaxLineBytes: 8_192,
    });
    expect(
      loadOrchestratorConfig({
        env: { ORCH_UPSTREAM_IDLE_TIMEOUT_MS: '1000', ORCH_UPSTREAM_MAX_IDLE_PER_CONTAINER: '2', ORCH_UPSTREAM_BUFFER_BYTES: '1024', ORCH_UPSTREAM_MAX_HEAD_BYTES: '2048', ORCH_UPSTREAM_MAX_LINE_BYTES: '128' },
      }),
    ).toMatchObject({ upstreamIdleTimeoutMs: 1_000, upstreamMaxIdlePerContainer: 2, upstreamBufferBytes: 1_024, upstreamMaxHeadBytes: 2_048, upstreamMaxLineBytes: 128 });
  });

  it('bounds health probes at 64 and runtime operations at 32 by default, each settable', () => {
    expect(loadOrchestratorConfig({ env: {} })).toMatchObject({ healthProbeConcurrency: 64, maxRuntimeOperations: 32 });
    expect(loadOrchestratorConfig({ env: { ORCH_HEALTH_PROBE_CONCURRENCY: '8', ORCH_MAX_RUNTIME_OPERATIONS: '4' } })).toMatchObject({ healthProbeConcurrency: 8, maxRuntimeOperations: 4 });
  });

  it('reads scale rules as JSON from ORCH_SCALE_RULES, defaulting `by` to 1', () => {
    const config = loadOrchestratorConfig({
      env: {
        ORCH_AUTOSCALE_POLICY: 'rules',
        ORCH_SCALE_RULES: '[{"metric":"p90LatencyMs","windowMs":30000,"op":">","threshold":400,"action":"scale-out"}]',
      },
    });
    expect(config.scaleRules).toEqual([{ metric: 'p90LatencyMs', windowMs: 30_000, op: '>', threshold: 400, action: 'scale-out', by: 1 }]);
  });

  it('reads client keys as JSON from ORCH_CLIENT_KEYS, scopes defaulting to infer; open, plain HTTP and TLS 1.2 by default', () => {
    expect(loadOrchestratorConfig({ env: {} })).toMatchObject({ clientKeys: [], clientRatePerSecond: 0, clientQueueShare: 0.5, tlsMinVersion: 'TLSv1.2' });
    const config = loadOrchestratorConfig({
      env: { ORCH_CLIENT_KEYS: `[{"name":"app","sha256":"${HASH_A}"},{"name":"prometheus","sha256":"${HASH_B}","scopes":["read"],"ratePerSecond":2,"burst":4}]` },
    });
    expect(config.clientKeys).toEqual([
      { name: 'app', sha256: HASH_A, scopes: ['infer'] },
      { name: 'prometheus', sha256: HASH_B, scopes: ['read'], ratePerSecond: 2, burst: 4 },
    ]);
  });

  it('names a config file that is not JSON without quoting any of it (it may hold a token), and one it cannot read by its error code', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'config-'));
    try {
      const file = join(dir, 'orchestrator.json');
      await writeFile(file, '{"adminToken": unquoted-SCAN-token-0123456789}');
      expect(() => loadOrchestratorConfig({ file })).toThrow(`config file ${file}: cannot read it as JSON (not valid JSON)`);
      expect(() => loadOrchestratorConfig({ file: join(dir, 'missing.json') })).toThrow(/cannot read it as JSON \(ENOENT\)$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['a rule with an unknown metric', { ORCH_SCALE_RULES: '[{"metric":"cpu","windowMs":1000,"op":">","threshold":1,"action":"scale-out"}]' }, '"scaleRules'],
    ['rules that are not JSON', { ORCH_SCALE_RULES: '[{' }, '"scaleRules"'],
    ['the rules policy without rules', { ORCH_AUTOSCALE_POLICY: 'rules' }, '"scaleRules"'],
    ['an unknown policy', { ORCH_AUTOSCALE_POLICY: 'cpu' }, '"autoscalePolicy"'],
    ['a minimum above the maximum', { ORCH_MIN_CONTAINERS: '5', ORCH_MAX_CONTAINERS: '4' }, '"minContainers"'],
    ['an admin token shorter than 16 characters', { ORCH_ADMIN_TOKEN: 'short' }, '"adminToken"'],
    ['a head timeout longer than the whole-request timeout', { ORCH_CLIENT_HEADERS_TIMEOUT_MS: '5000', ORCH_CLIENT_REQUEST_TIMEOUT_MS: '1000' }, '"clientHeadersTimeoutMs"'],
    ['a head limit under 1 KiB', { ORCH_MAX_HEADER_BYTES: '100' }, '"maxHeaderBytes"'],
    ['an upstream head limit under 1 KiB', { ORCH_UPSTREAM_MAX_HEAD_BYTES: '100' }, '"upstreamMaxHeadBytes"'],
    ['no idle connection per container', { ORCH_UPSTREAM_MAX_IDLE_PER_CONTAINER: '0' }, '"upstreamMaxIdlePerContainer"'],
    ['no runtime operation at once', { ORCH_MAX_RUNTIME_OPERATIONS: '0' }, '"maxRuntimeOperations"'],
    ['no health probe at once', { ORCH_HEALTH_PROBE_CONCURRENCY: '0' }, '"healthProbeConcurrency"'],
    ['a client key given as the key itself', { ORCH_CLIENT_KEYS: '[{"name":"app","sha256":"orch_notahash"}]' }, '"clientKeys.0.sha256"'],
    ['a client key name with a space', { ORCH_CLIENT_KEYS: `[{"name":"my app","sha256":"${HASH_A}"}]` }, '"clientKeys.0.name"'],
    ['an unknown scope', { ORCH_CLIENT_KEYS: `[{"name":"app","sha256":"${HASH_A}","scopes":["admin"]}]` }, '"clientKeys.0.scopes.0"'],
    ['an unknown field in a key (a typo of ratePerSecond)', { ORCH_CLIENT_KEYS: `[{"name":"app","sha256":"${HASH_A}","rate":5}]` }, '"clientKeys.0"'],
    ['two keys under one name', { ORCH_CLIENT_KEYS: `[{"name":"app","sha256":"${HASH_A}"},{"name":"app","sha256":"${HASH_B}"}]` }, '"clientKeys.1.name"'],
    ['one key under two names', { ORCH_CLIENT_KEYS: `[{"name":"a","sha256":"${HASH_A}"},{"name":"b","sha256":"${HASH_A}"}]` }, '"clientKeys.1.sha256"'],
    ['keys that are not JSON', { ORCH_CLIENT_KEYS: 'app:abc' }, '"clientKeys"'],
    ['a negative rate', { ORCH_CLIENT_RATE_PER_SECOND: '-1' }, '"clientRatePerSecond"'],
    ['a queue share over 1', { ORCH_CLIENT_QUEUE_SHARE: '1.5' }, '"clientQueueShare"'],
    ['a certificate without its key', { ORCH_TLS_CERT_FILE: 'cert.pem' }, '"tlsKeyFile"'],
    ['a key without its certificate', { ORCH_TLS_KEY_FILE: 'key.pem' }, '"tlsCertFile"'],
    ['TLS 1.1', { ORCH_TLS_MIN_VERSION: 'TLSv1.1' }, '"tlsMinVersion"'],
  ])('rejects %s naming the key', (_what, env, key) => {
    const error = configError(env);
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toContain(key);
    // A token never appears in an error.
    expect(error.message).not.toContain('"short"');
  });
});

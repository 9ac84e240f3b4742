import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, run } from '../helpers/cli.js';
import { cleanEnv } from '../helpers/orchestrator-process.js';
import { refusingUrl } from '../load/test-server.js';

const KOA_VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }).packages['node_modules/koa']!.version;

/** The bulk advisory endpoint's answer: koa, a production dependency, affected at `severity`. */
const advisory = (severity: string): string =>
  JSON.stringify({ koa: [{ id: 1, url: 'https://advisories.test/1', title: 'Test advisory on koa', severity, vulnerable_versions: `<=${KOA_VERSION}`, cwe: [], cvss: { score: 7 } }] });

describe('npm run audit (scripts/audit.sh), against a registry on 127.0.0.1', () => {
  /** What the advisory endpoint answers next. */
  let answer = { status: 200, body: '{}' };
  let registry: Server;
  let registryUrl: string;
  let cache: string;

  beforeAll(async () => {
    cache = await mkdtemp(join(tmpdir(), 'audit-cache-'));
    registry = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/-/npm/v1/security/advisories/bulk') res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
        // npm reads the packument of an advised package to find its affected versions.
        else if (req.url === '/koa') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'koa', 'dist-tags': { latest: KOA_VERSION }, versions: { [KOA_VERSION]: { name: 'koa', version: KOA_VERSION } } }));
        else res.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await new Promise((resolve) => registry?.close(resolve));
    await rm(cache, { recursive: true, force: true });
  });

  /** Each run with an empty npm cache: npm keeps what it computed for an advisory there. */
  const audit = async (registryAt: string) => {
    const runCache = await mkdtemp(join(cache, 'run-'));
    return run('bash', ['scripts/audit.sh'], { env: { ...cleanEnv, npm_config_registry: registryAt, npm_config_cache: runCache, npm_config_fetch_retries: '0', npm_config_update_notifier: 'false' } });
  };

  it.each([
    { name: 'refuses the request (405, as the registry of these machines does)', status: 405, body: '', says: /405 Method Not Allowed/ },
    { name: 'answers something that is not JSON (a proxy page)', status: 200, body: '<html>sign in</html>', says: /invalid json/ },
  ])('exits 2 with one line, and no verdict, when the advisory endpoint $name', async ({ status, body, says }) => {
    answer = { status, body };
    const result = await audit(registryUrl);
    expect(result.code, result.stdout).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^audit: could not be performed, so nothing was checked: /)]);
    expect(result.stderr).toMatch(says);
  });

  it('exits 2 with one line when no registry answers', async () => {
    const result = await audit(`${new URL(await refusingUrl()).origin}/`);
    expect(result.code).toBe(2);
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^audit: could not be performed, .*ECONNREFUSED/)]);
  });

  it.each([
    { name: 'no advisory', body: '{}', says: /^audit: no high or critical advisory in \d+ production dependencies\n$/ },
    { name: 'a moderate advisory only', body: advisory('moderate'), says: /^audit: no high or critical advisory in \d+ production dependencies \(lower: \d+ moderate; see npm audit --omit=dev\)\n$/ },
  ])('exits 0 with $name', async ({ body, says }) => {
    answer = { status: 200, body };
    const result = await audit(registryUrl);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(says);
  });

  it.each(['high', 'critical'])('exits 1 listing the findings with a %s advisory', async (severity) => {
    answer = { status: 200, body: advisory(severity) };
    const result = await audit(registryUrl);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toMatch(/^audit: \d+ production dependenc(y has|ies have) high or critical advisories\n/);
    expect(result.stdout).toContain(`  koa * [${severity}]: Test advisory on koa (https://advisories.test/1); no fix available\n`);
  });
});

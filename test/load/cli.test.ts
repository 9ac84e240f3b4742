import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import { runEntry } from '../helpers/cli.js';
import { refusingUrl, startTestServer, type TestServer } from './test-server.js';

const runCliProcess = (args: string[]) => runEntry('load/src/main.ts', args);

let server: TestServer;
let dir: string;
beforeEach(async () => {
  server = await startTestServer({ containers: ['w1-c1', 'w2-c1'] });
  dir = await mkdtemp(join(tmpdir(), 'load-cli-'));
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('npm run load', () => {
  it('runs the requests, prints the summary, writes --json and exits 0', async () => {
    const file = join(dir, 'result.json');
    const { code, stdout, stderr } = await runCliProcess(['--url', server.url, '--requests', '40', '--threads', '2', '--concurrency', '4', '--json', file]);
    expect(stderr).not.toContain('error');
    expect(code).toBe(0);
    expect(server.stats.requests).toBe(40);
    expect(stdout).toMatch(/requests +40 \(2 threads, concurrency 4\)/);
    expect(stdout).toMatch(/status +200: 40/);
    expect(stdout).toMatch(/w1-c1 +20 +50\.0%/);
    expect(stdout).toMatch(/w2-c1 +20 +50\.0%/);
    const result = JSON.parse(await readFile(file, 'utf8')) as LoadResult;
    expect(result).toMatchObject({ url: server.url, requests: 40, succeeded: 40, failed: 0, servedBy: { 'w1-c1': 20, 'w2-c1': 20 } });
    expect(result.latencyMs?.p99).toBeGreaterThan(0);
  });

  it('writes only the JSON to stdout with --json -', async () => {
    const { code, stdout, stderr } = await runCliProcess(['--url', server.url, '--requests', '5', '--json', '-', '--no-progress']);
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as LoadResult).succeeded).toBe(5);
    expect(stderr).toMatch(/status +200: 5/);
  });

  it('exits 1 with a one-line error when requests fail, and 0 with --tolerate-errors', async () => {
    const url = await refusingUrl();
    const failed = await runCliProcess(['--url', url, '--requests', '3', '--no-progress']);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/errors +ECONNREFUSED: 3/);
    expect(failed.stderr).toMatch(/^error: .*\[REQUESTS_FAILED\]\n$/);
    const tolerated = await runCliProcess(['--url', url, '--requests', '3', '--no-progress', '--tolerate-errors']);
    expect(tolerated.code).toBe(0);
  });

  it('exits 2 with a one-line error on bad options', async () => {
    const { code, stdout, stderr } = await runCliProcess(['--requests', '0']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: --requests: .*\[USAGE\]\n$/);
    const report = await runCliProcess(['--report', 'result.png']);
    expect(report.code).toBe(2);
    expect(report.stderr).toMatch(/^error: --report: expected a file name ending in \.html; received "result\.png" \[USAGE\]\n$/);
  });

  it('writes an HTML report with latency and throughput over time and requests per container', async () => {
    const file = join(dir, 'report.html');
    const { code, stderr } = await runCliProcess(['--url', server.url, '--requests', '30', '--concurrency', '3', '--no-progress', '--report', file]);
    expect(code).toBe(0);
    expect(stderr).toContain(`report written to ${file}`);
    const html = await readFile(file, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<h2>Latency percentiles per second</h2>');
    // Three charts: latency and throughput lines, and a bar per container with its count.
    expect(html.match(/<svg /g)).toHaveLength(3);
    expect(html.match(/<polyline /g)!.length).toBeGreaterThanOrEqual(5);
    expect(html).toContain('>w1-c1<');
    expect(html).toContain('15 requests');
    expect(html).not.toContain('<script');
  });

  it('prints help', async () => {
    const { code, stdout } = await runCliProcess(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: npm run load');
  });
});

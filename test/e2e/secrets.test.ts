import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateKeyPairCommand, DescribeInstanceAttributeCommand, DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { request, type Dispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { KeyScope } from '../../orchestrator/src/config.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { LABELS, MODEL_HOST_ENV } from '../../runtime/src/driver.js';
import type { ContainerRecord } from '../../status/src/schema.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { clientKeysEnv, toolEnv, type TestKey } from '../helpers/client-keys.js';
import { useTempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, inspect, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { cliDenying } from '../helpers/ec2-deny.js';
import { motoCliEnv, startMoto, type Moto } from '../helpers/moto.js';
import { serveModelContainers, watchInstances, type InstanceWatch } from '../helpers/moto-instances.js';
import { ROUTE_ENV } from '../helpers/network-guard.js';
import {
  cleanEnv,
  liveStatus,
  readState,
  runOrchestrator,
  startOrchestrator,
  stopOrchestrator,
  type OrchestratorProcess,
} from '../helpers/orchestrator-process.js';
import { processEnvironment } from '../helpers/processes.js';

// Recognisable fake secrets, letters, digits and dashes only: JSON, URL and form encoding leave
// them as they are, so looking for them verbatim (and base64-encoded) finds them in any output.
const ADMIN_TOKEN = 'admin-token-SCAN-5f3a9c1e7b2d4a60e8';
const WRONG_TOKEN = 'wrong-token-SCAN-0c9e8d7f6a5b4c3d2e';
const SHORT_TOKEN = 'short-SCAN-1a';
const AWS_CREDENTIALS = {
  AWS_ACCESS_KEY_ID: 'AKIASCANTESTKEY12345',
  AWS_SECRET_ACCESS_KEY: 'secret-access-key-SCAN-2b7e151628aed2a6',
  AWS_SESSION_TOKEN: 'session-token-SCAN-3243f6a8885a308d3131',
};
/** Stands for any other variable of an operator's shell: it must reach no model and no user-data either. */
const CANARY = 'canary-SCAN-7d1e4f0a9b3c5e28';

/**
 * The base64 forms of `value` wherever it sits inside a longer base64 text: one per alignment
 * (0, 1 or 2 bytes before it), without the characters its neighbours share; standard and URL-safe.
 */
function base64Forms(value: string): string[] {
  const bytes = Buffer.from(value);
  return [0, 1, 2].flatMap((shift) => {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const form = encoded.slice(Math.ceil((shift * 4) / 3), Math.floor(((shift + bytes.length) * 8) / 6));
    return [form, form.replaceAll('+', '-').replaceAll('/', '_')];
  });
}

/** Every place a secret shows up, verbatim or base64-encoded: `name (how) in output`. */
function leaks(secrets: Record<string, string>, outputs: Record<string, string>): string[] {
  const found = new Set<string>();
  for (const [name, value] of Object.entries(secrets)) {
    const forms: Array<[string, string]> = [['verbatim', value], ...base64Forms(value).map((form): [string, string] => ['base64', form])];
    for (const [where, text] of Object.entries(outputs)) {
      for (const [how, form] of forms) if (text.includes(form)) found.add(`${name} (${how}) in ${where}`);
    }
  }
  return [...found];
}

describe('the secret scan itself', () => {
  it('finds a secret verbatim, and base64-encoded at any offset of a longer text, and nothing else', () => {
    const secrets = { token: ADMIN_TOKEN };
    expect(leaks(secrets, { log: `{"msg":"x","auth":"${ADMIN_TOKEN}"}` })).toEqual(['token (verbatim) in log']);
    for (const before of ['', 'a', 'ab', 'abc']) {
      const blob = Buffer.from(`#!/bin/bash\n${before}${ADMIN_TOKEN}\nexit 0\n`).toString('base64');
      expect(leaks(secrets, { 'user-data': blob })).toEqual(['token (base64) in user-data']);
      expect(leaks(secrets, { 'user-data': blob.replaceAll('+', '-').replaceAll('/', '_') })).toEqual(['token (base64) in user-data']);
    }
    expect(leaks(secrets, { log: `${ADMIN_TOKEN.slice(0, -1)} ${Buffer.from(WRONG_TOKEN).toString('base64')}` })).toEqual([]);
  });
});

describe('the orchestrator with an admin token', () => {
  const cluster = useTempCluster(1);
  let backends: Backend[] = [];
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(async () => {
    await stopOrchestrator(orchestrator);
    orchestrator = undefined;
    await Promise.all(backends.map((b) => b.kill()));
    backends = [];
  });

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const json = { 'content-type': 'application/json' };
  const calls: Array<{ what: string; method: 'GET' | 'POST' | 'DELETE'; path: string; headers?: Record<string, string>; body?: string; status: number }> = [
    { what: 'a model request', method: 'POST', path: '/new_request', headers: json, body: '{"text":"fine"}', status: 200 },
    { what: 'a passthrough request', method: 'GET', path: '/v1/models?verbose=1', status: 200 },
    { what: 'a wrong method', method: 'GET', path: '/new_request', status: 405 },
    { what: 'a body over maxBodyBytes', method: 'POST', path: '/new_request', headers: json, body: 'x'.repeat(2048), status: 413 },
    { what: 'the right token', method: 'POST', path: '/admin/autoscaler/pause', headers: bearer(ADMIN_TOKEN), status: 200 },
    { what: 'the right token', method: 'POST', path: '/admin/autoscaler/resume', headers: bearer(ADMIN_TOKEN), status: 200 },
    { what: 'the right token, a bad body', method: 'POST', path: '/admin/scale', headers: { ...bearer(ADMIN_TOKEN), ...json }, body: '{"containers":', status: 400 },
    { what: 'the right token, an unknown container', method: 'POST', path: '/admin/containers/nope/drain', headers: bearer(ADMIN_TOKEN), status: 404 },
    { what: 'the right token, an unmanaged container', method: 'DELETE', path: '/admin/containers/b1', headers: bearer(ADMIN_TOKEN), status: 409 },
    { what: 'no token', method: 'POST', path: '/admin/autoscaler/pause', status: 401 },
    { what: 'a wrong token', method: 'POST', path: '/admin/autoscaler/pause', headers: bearer(WRONG_TOKEN), status: 401 },
    { what: 'the token with more after it', method: 'POST', path: '/admin/autoscaler/pause', headers: bearer(`${ADMIN_TOKEN} ${WRONG_TOKEN}`), status: 401 },
    { what: 'the token without a scheme', method: 'POST', path: '/admin/autoscaler/pause', headers: { authorization: ADMIN_TOKEN }, status: 401 },
    {
      what: 'the token as Basic credentials',
      method: 'POST',
      path: '/admin/autoscaler/pause',
      headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
      status: 401,
    },
    { what: 'the token in the query string', method: 'POST', path: `/admin/autoscaler/pause?token=${ADMIN_TOKEN}`, status: 401 },
    { what: 'the right token', method: 'POST', path: '/admin/containers/b2/drain', headers: bearer(ADMIN_TOKEN), status: 202 },
    { what: 'the status', method: 'GET', path: '/status', status: 200 },
    { what: 'the metrics', method: 'GET', path: '/metrics', status: 200 },
    { what: 'the health', method: 'GET', path: '/health', status: 200 },
  ];

  it.each([false, true])(
    'shows the token nowhere (access log %s): logs, answers and errors, /status, /metrics, the dashboard feed, the state file',
    async (accessLog) => {
      backends = [await startBackend('b1'), await startBackend('b2')];
      await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', backends)));
      orchestrator = await startOrchestrator(cluster.statePath, ['--access-log', String(accessLog), '--max-body-bytes', '1024'], {
        env: { ORCH_ADMIN_TOKEN: ADMIN_TOKEN },
      });
      const outputs: Record<string, string> = {};

      for (const { what, method, path, headers, body, status } of calls) {
        const answer = await answerOf(`${orchestrator.url}${path}`, { method, headers, body });
        expect(answer.status, `${what}: ${method} ${path}: ${answer.text}`).toBe(status);
        outputs[`the answer to ${what} (${method} ${path})`] = answer.text;
      }
      outputs['the first dashboard event'] = (await answerOf(`${orchestrator.url}/dashboard/events`)).text;

      orchestrator.child.kill('SIGTERM');
      expect(await orchestrator.exited).toBe(0);
      outputs['the state file'] = await readFile(cluster.statePath, 'utf8');
      outputs['its log (stdout)'] = orchestrator.output.stdout;
      outputs['its stderr'] = orchestrator.output.stderr;

      // The scan saw the real thing: the admin calls were logged, the state file was written at exit.
      expect(orchestrator.output.stdout).toContain('"msg":"autoscaler paused"');
      if (accessLog) expect(orchestrator.output.stdout).toContain('"path":"/admin/autoscaler/pause","status":401');
      expect(JSON.parse(outputs['the state file'])).toMatchObject({ orchestrator: { running: false } });
      expect(leaks({ 'the admin token': ADMIN_TOKEN, 'a wrong token': WRONG_TOKEN }, outputs)).toEqual([]);
    },
  );

  it('refuses a token that is too short with one line that does not show it', async () => {
    await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', [{ id: 'b1', port: 1 }])));
    const result = await runOrchestrator(['--port', '0', '--state-path', cluster.statePath], { env: { ORCH_ADMIN_TOKEN: SHORT_TOKEN } });
    expect(result.code).toBe(2);
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^error: config key "adminToken" \(env ORCH_ADMIN_TOKEN\): .*\[CONFIG_INVALID\]$/)]);
    expect(leaks({ 'the short admin token': SHORT_TOKEN }, { stdout: result.stdout, stderr: result.stderr })).toEqual([]);
  });
});

/** An answer's status, and its headers and body as text; of an event stream, up to its first event (then the stream is closed). */
async function answerOf(url: string, options: Partial<Pick<Dispatcher.RequestOptions, 'method' | 'headers' | 'body'>> = {}): Promise<{ status: number; text: string }> {
  const response = await request(url, options);
  const stream = String(response.headers['content-type']).startsWith('text/event-stream');
  let body = '';
  for await (const chunk of response.body) {
    body += (chunk as Buffer).toString('utf8');
    if (stream && body.includes('\n\n')) break;
  }
  return { status: response.statusCode, text: `${JSON.stringify(response.headers)}\n${body}` };
}

// Client keys: one per scope, and one that was revoked (or never given out): sent, never configured.
const INFER_KEY = 'orch_infer-key-SCAN-9b4e2d7a1c6f3e80';
const READ_KEY = 'orch_read-key-SCAN-3f8a1c5e9d2b7a46';
const REVOKED_KEY = 'orch_revoked-key-SCAN-6d0c4b8f2e7a1d93';

describe('the orchestrator with client keys', () => {
  const cluster = useTempCluster(1);
  let backends: Backend[] = [];
  let orchestrator: OrchestratorProcess | undefined;
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secrets-keys-'));
  });
  afterEach(async () => {
    await stopOrchestrator(orchestrator);
    orchestrator = undefined;
    await Promise.all(backends.map((b) => b.kill()));
    backends = [];
    await rm(dir, { recursive: true, force: true });
  });

  const keys: TestKey[] = [
    { name: 'scan-infer', key: INFER_KEY, scopes: ['infer'] },
    { name: 'scan-reader', key: READ_KEY, scopes: ['read'] },
  ];
  const keyOf = (scope: KeyScope): string => (scope === 'infer' ? INFER_KEY : READ_KEY);
  const otherKey = (scope: KeyScope): string => (scope === 'infer' ? READ_KEY : INFER_KEY);
  const basic = (key: string): string => `Basic ${Buffer.from(`scan:${key}`).toString('base64')}`;
  const routes: Array<{ what: string; method: 'GET' | 'POST'; path: string; scope: KeyScope; body?: string }> = [
    { what: 'a model request', method: 'POST', path: '/new_request', scope: 'infer', body: '{"text":"fine"}' },
    { what: 'a forwarded request', method: 'GET', path: '/v1/models?verbose=1', scope: 'infer' },
    { what: 'the status', method: 'GET', path: '/status', scope: 'read' },
    { what: 'the metrics', method: 'GET', path: '/metrics', scope: 'read' },
    { what: 'the dashboard', method: 'GET', path: '/dashboard', scope: 'read' },
    { what: 'the dashboard event stream', method: 'GET', path: '/dashboard/events', scope: 'read' },
  ];
  const credentials: Array<{ what: string; authorization?: (scope: KeyScope) => string | string[]; query?: (scope: KeyScope) => string; status: number }> = [
    { what: 'the right key', authorization: (s) => `Bearer ${keyOf(s)}`, status: 200 },
    { what: 'the right key as Basic password', authorization: (s) => basic(keyOf(s)), status: 200 },
    { what: 'the key of the other scope', authorization: (s) => `Bearer ${otherKey(s)}`, status: 403 },
    { what: 'a revoked key', authorization: () => `Bearer ${REVOKED_KEY}`, status: 401 },
    { what: 'a revoked key as Basic password', authorization: () => basic(REVOKED_KEY), status: 401 },
    { what: 'no key', status: 401 },
    { what: 'the key with more after it', authorization: (s) => `Bearer ${keyOf(s)} ${REVOKED_KEY}`, status: 401 },
    { what: 'the key without a scheme', authorization: (s) => keyOf(s), status: 401 },
    { what: 'the key twice', authorization: (s) => [`Bearer ${keyOf(s)}`, `Bearer ${keyOf(s)}`], status: 401 },
    { what: 'the key in the query string', query: (s) => `key=${keyOf(s)}&access_token=${keyOf(s)}`, status: 401 },
  ];

  it(
    'shows no key anywhere, right, wrong, missing or malformed: answers, logs, /status, /metrics, the dashboard feed, the state file, the containers, the client tools',
    { timeout: 60_000 },
    async () => {
      // What the containers received, whole: request line, every header as sent, body.
      const received: string[] = [];
      const record = (req: IncomingMessage, _res: unknown, body: Buffer): boolean => {
        received.push(`${req.method} ${req.url}\n${req.rawHeaders.join('\n')}\n\n${body.toString('utf8')}`);
        return false;
      };
      backends = [await startBackend('b1', { handler: record }), await startBackend('b2', { handler: record })];
      await writeFile(cluster.statePath, JSON.stringify(unmanagedInventory('local', backends)));
      orchestrator = await startOrchestrator(cluster.statePath, ['--access-log', 'true'], { env: clientKeysEnv(keys) });
      const outputs: Record<string, string> = {};

      for (const route of routes) {
        for (const { what, authorization, query, status } of credentials) {
          const path = query ? `${route.path}${route.path.includes('?') ? '&' : '?'}${query(route.scope)}` : route.path;
          const headers = authorization ? { authorization: authorization(route.scope) } : {};
          const answer = await answerOf(`${orchestrator.url}${path}`, { method: route.method, headers, body: route.body });
          expect(answer.status, `${route.what} with ${what}: ${answer.text}`).toBe(status);
          outputs[`the answer to ${route.what} with ${what}`] = answer.text;
        }
      }
      const health = await answerOf(`${orchestrator.url}/health`);
      expect(health.status).toBe(200);
      outputs['the health'] = health.text;

      // The client tools, given the keys as their users give them.
      const json = join(dir, 'load.json');
      const html = join(dir, 'load.html');
      const load = await runEntry('load/src/main.ts', ['--url', `${orchestrator.url}/new_request`, '--requests', '8', '--concurrency', '2', '--json', json, '--report', html], {
        env: toolEnv(INFER_KEY),
      });
      expect(load.code, load.stderr).toBe(0);
      Object.assign(outputs, { 'npm run load: stdout': load.stdout, 'npm run load: stderr': load.stderr });
      outputs['npm run load: its --json report'] = await readFile(json, 'utf8');
      outputs['npm run load: its html report'] = await readFile(html, 'utf8');
      const status = await runEntry('status/src/main.ts', ['--url', `${orchestrator.url}/status`, '--json'], { env: toolEnv(READ_KEY) });
      expect(status.code, status.stderr).toBe(0);
      Object.assign(outputs, { 'npm run status: stdout': status.stdout, 'npm run status: stderr': status.stderr });

      orchestrator.child.kill('SIGTERM');
      expect(await orchestrator.exited).toBe(0);
      outputs['the state file'] = await readFile(cluster.statePath, 'utf8');
      outputs['its log (stdout)'] = orchestrator.output.stdout;
      outputs['its stderr'] = orchestrator.output.stderr;
      outputs['what the containers received'] = received.join('\n\n');

      // The scan saw the real thing: the keys' names in the access log, and the requests let through reached the containers.
      expect(orchestrator.output.stdout).toContain('"path":"/new_request","status":200');
      for (const { name } of keys) expect(orchestrator.output.stdout).toContain(`"client":"${name}"`);
      // Two inference routes, each with the key as bearer and as Basic password, then the load.
      expect(received).toHaveLength(2 * 2 + 8);
      expect(leaks({ 'the infer key': INFER_KEY, 'the read key': READ_KEY, 'a revoked key': REVOKED_KEY }, outputs)).toEqual([]);
    },
  );
});

describe('EC2 provisioning with AWS credentials and an SSH key', () => {
  const cluster = useTempCluster(1);
  let moto: Moto;
  let ec2: EC2Client;
  let watch: InstanceWatch | undefined;
  let backends: Backend[] = [];
  beforeEach(async () => {
    moto = await startMoto();
    ec2 = moto.client();
    // The worker's model containers come up once its instance exists, on the loopback address its public one is routed to.
    watch = watchInstances(ec2, 'scan', async (instance) => {
      backends.push(...(await serveModelContainers(instance, [cluster.basePort, cluster.basePort + 1])));
    });
  }, 60_000);
  afterEach(async () => {
    try {
      await watch?.stop();
    } finally {
      await moto?.stop();
      await Promise.all(backends.map((b) => b.kill()));
      backends = [];
    }
  });

  const secrets: Record<string, string> = {
    'the AWS access key id': AWS_CREDENTIALS.AWS_ACCESS_KEY_ID,
    'the AWS secret access key': AWS_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    'the AWS session token': AWS_CREDENTIALS.AWS_SESSION_TOKEN,
    'the admin token in the shell': ADMIN_TOKEN,
    'a canary variable in the shell': CANARY,
  };

  /** The lines of a private key that hold key material (the first one is the same header in every OpenSSH key), as secrets. */
  const keySecrets = (what: string, pem: string): Record<string, string> => {
    const body = pem.split('\n').filter((line) => line && !line.startsWith('-----'));
    expect(body.length).toBeGreaterThan(1);
    return Object.fromEntries(body.slice(1).map((line, i) => [`${what} (line ${i + 2})`, line]));
  };

  const cli = (command: 'provision' | 'teardown', extra: string[] = [], env: Record<string, string> = {}) =>
    runEntry(
      'provisioning/src/main.ts',
      [
        command, '--provider', 'aws', '--cluster', 'scan', '--workers', '1', '--ssh-cidr', '203.0.113.7/32', '--aws-endpoint', moto.endpoint, '--region', 'us-east-1',
        // moto's console shows no host keys (it boots no operating system), and nock cannot reach into a CLI's EC2 calls for them.
        '--ssh-host-key-check', 'false', '--launch-timeout-ms', '60000', '--log-level', 'trace', ...cluster.cliFlags, ...extra,
      ],
      { env: motoCliEnv({ ...AWS_CREDENTIALS, ORCH_ADMIN_TOKEN: ADMIN_TOKEN, MODEL_ENV_CANARY: CANARY, [ROUTE_ENV]: '1', ...env }), timeoutMs: 120_000 },
    );

  /** What a run left behind for anyone to read: its output, the state file and known_hosts. */
  async function outputsOf(run: string, result: { stdout: string; stderr: string }): Promise<Record<string, string>> {
    return {
      [`${run}: stdout`]: result.stdout,
      [`${run}: stderr`]: result.stderr,
      [`${run}: the state file`]: await readFile(cluster.statePath, 'utf8').catch(() => ''),
      [`${run}: known_hosts`]: await readFile(join(cluster.dir, 'keys', 'scan.known_hosts'), 'utf8').catch(() => ''),
    };
  }

  /** The user-data of every instance launched, as EC2 keeps it (base64) and decoded: it goes to EC2 and the instance's disk. */
  async function userData(): Promise<Record<string, string>> {
    const found = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: ['scan'] }] }));
    const instances = (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    expect(instances.length).toBeGreaterThan(0);
    const kept = await Promise.all(
      instances.map(async (i) => (await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: i.InstanceId, Attribute: 'userData' }))).UserData?.Value ?? ''),
    );
    return { 'the user-data as kept by EC2': kept.join('\n'), 'the user-data': kept.map((b) => Buffer.from(b, 'base64').toString('utf8')).join('\n') };
  }

  it('a created key pair: provision and teardown keep the credentials and the key out of the state, logs and user-data', { timeout: 180_000 }, async () => {
    const provisioned = await cli('provision', ['--yes']);
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const outputs = await outputsOf('provision', provisioned);

    // The secrets were really in play: the key EC2 made is saved for SSH, and the state file names only its path.
    const keyPath = join(cluster.dir, 'keys', 'scan.pem');
    const created = keySecrets('the created private key', await readFile(keyPath, 'utf8'));
    expect(JSON.parse(outputs['provision: the state file']!).workers[0].runtime.ssh).toMatchObject({ privateKeyPath: keyPath });
    // What user-data may hold: the compose file and the containers' settings.
    Object.assign(outputs, await userData());
    expect(outputs['the user-data']).toContain('WORKER_ID=w1\n');

    const tornDown = await cli('teardown');
    expect(tornDown.code, tornDown.stderr).toBe(0);
    Object.assign(outputs, await outputsOf('teardown', tornDown));
    expect(leaks({ ...secrets, ...created }, outputs)).toEqual([]);
  });

  it("an operator's key pair: a good run, then EC2 refusing a permission and the credentials, keep every secret out", { timeout: 180_000 }, async () => {
    // The operator made the key pair in EC2 and kept its private key.
    const made = await ec2.send(new CreateKeyPairCommand({ KeyName: 'operator', KeyType: 'ed25519' }));
    const keyPath = join(cluster.dir, 'operator.pem');
    await writeFile(keyPath, made.KeyMaterial!);
    await chmod(keyPath, 0o600);
    const operator = keySecrets("the operator's private key", made.KeyMaterial!);
    const withKey = ['--yes', '--key-name', 'operator', '--ssh-key-path', keyPath];

    const good = await cli('provision', withKey);
    expect(good.code, good.stderr).toBe(0);
    const outputs = await outputsOf('a good run', good);
    expect(JSON.parse(outputs['a good run: the state file']!).workers[0].runtime.ssh).toMatchObject({ privateKeyPath: keyPath });
    Object.assign(outputs, await userData());

    // EC2's UnauthorizedOperation, through nock in the CLI (moto's IAM answers AccessDenied instead).
    const denied = await cli('provision', [...withKey, '--workers', '2'], cliDenying(moto.endpoint, ['RunInstances']));
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('[AWS_UNAUTHORIZED]');
    Object.assign(outputs, await outputsOf('a denied launch', denied));

    // From here on moto checks every request's credentials against its IAM, which knows none: EC2's AuthFailure.
    // The watch asks EC2 too: it ends first.
    await watch!.stop();
    watch = undefined;
    expect((await fetch(`${moto.endpoint}/moto-api/reset-auth`, { method: 'POST', body: '0' })).ok).toBe(true);
    const rejected = await cli('provision', withKey);
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toMatch(/AuthFailure.*\[AWS_ERROR\]\n$/);
    Object.assign(outputs, await outputsOf('rejected credentials', rejected));

    expect(leaks({ ...secrets, ...operator }, outputs)).toEqual([]);
  });
});

/**
 * What the environment of whoever starts a model (provisioning, the orchestrator) may hold and no
 * model may see: the admin token, cloud credentials, the starter's own Node options, variables the
 * worker would read (LOG_LEVEL, MAX_BODY_BYTES) and a canary standing for anything else.
 */
const STARTER_SECRETS = { ORCH_ADMIN_TOKEN: ADMIN_TOKEN, ...AWS_CREDENTIALS, MODEL_ENV_CANARY: CANARY };
const STARTER_SETTINGS = { NODE_OPTIONS: '--max-http-header-size=32768', LOG_LEVEL: 'trace', MAX_BODY_BYTES: '7' };
/** The starters' whole environment: the machine's, the variables above, and allow-listed ones set to known values. */
const starterEnv: NodeJS.ProcessEnv = { ...cleanEnv, ...STARTER_SECRETS, ...STARTER_SETTINGS, TZ: 'UTC', LANG: 'C.UTF-8' };

/** No secret of the starter is in `env`, by its name or its value under another name (the exact comparisons that follow catch the settings). */
function expectNoSecrets(env: Record<string, string>, where: string): void {
  for (const name of Object.keys(STARTER_SECRETS)) expect(env, `${name} in ${where}`).not.toHaveProperty(name);
  const text = Object.entries(env).map(([key, value]) => `${key}=${value}`).join('\n');
  expect(leaks(STARTER_SECRETS, { [where]: text })).toEqual([]);
}

/** What every model is told of where it listens and who it is, on every runtime. */
const placement = (c: Pick<ContainerRecord, 'id' | 'host' | 'port'>): Record<string, string> => ({
  HOST: c.host,
  PORT: String(c.port),
  CONTAINER_ID: c.id,
  FLASK_RUN_HOST: c.host,
  FLASK_RUN_PORT: String(c.port),
});

/** A model process's real environment is exactly the allow-listed host variables, the template env, and where it listens. */
async function expectModelProcessEnv(c: ContainerRecord, template: Record<string, string>): Promise<void> {
  const env = await processEnvironment(Number(c.runtimeId));
  const where = `the environment of ${c.id} (pid ${c.runtimeId})`;
  expectNoSecrets(env, where);
  const host = Object.fromEntries(MODEL_HOST_ENV.filter((name) => starterEnv[name] !== undefined).map((name) => [name, starterEnv[name]!]));
  expect(host, 'the starter sets the basics a program needs').toMatchObject({ PATH: cleanEnv.PATH, TZ: 'UTC', LANG: 'C.UTF-8' });
  expect(env, where).toEqual({ ...host, ...template, ...placement(c) });
}

/** Waits until the orchestrator replaced `victim` (same id, a new runtime id, back in rotation) and returns the new record. */
function replaced(url: string, victim: ContainerRecord): Promise<ContainerRecord> {
  return poll(async () => {
    const record = (await liveStatus(url)).containers.find((c) => c.id === victim.id);
    return record && record.runtimeId !== victim.runtimeId && record.restarts >= 1 && record.state === 'free' ? record : undefined;
  }, `${victim.id} replaced`);
}

describe('model processes never see the environment of what started them (local processes)', () => {
  const cluster = useTempCluster(1);
  let orchestrator: OrchestratorProcess | undefined;
  afterEach(async () => {
    await stopOrchestrator(orchestrator);
    orchestrator = undefined;
  });

  it('containers started by `npm run provision` and their replacements started by the orchestrator get only the allow-list', { timeout: 120_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', '--workers', '1', ...cluster.cliFlags], { env: starterEnv });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    const template = inventory.workers[0]!.template.env;
    expect(template).toEqual({ WORK_MS: '0', ENABLE_CRASH_API: 'false' });
    expect(inventory.containers).toHaveLength(2);
    for (const c of inventory.containers) await expectModelProcessEnv(c, template);

    orchestrator = await startOrchestrator(cluster.statePath, [], { env: starterEnv });
    const victim = inventory.containers[0]!;
    process.kill(Number(victim.runtimeId), 'SIGKILL');
    await expectModelProcessEnv(await replaced(orchestrator.url, victim), template);
  });
});

describe('model containers never see the environment of what started them (Docker)', () => {
  const image = `inference-worker:${uniqueName('secrets')}`;
  const clusterName = uniqueName('secrets').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const cluster = useTempCluster(1);
  let orchestrator: OrchestratorProcess | undefined;
  let imageEnv: Set<string>;

  beforeAll(async () => {
    await ensureDockerEngine();
    await buildWorkerImage(image);
    imageEnv = new Set((await inspect(image)).Config.Env ?? []);
  }, ENGINE_SETUP_TIMEOUT_MS + 300_000);
  afterEach(async () => {
    await stopOrchestrator(orchestrator);
    orchestrator = undefined;
    await runEntry('provisioning/src/main.ts', ['teardown', '--runtime', 'docker', '--cluster', clusterName, ...cluster.cliFlags], { env: cleanEnv, timeoutMs: 120_000 });
  }, 150_000);
  afterAll(async () => {
    const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${clusterName}`]);
    await removeDockerObjects(stdout.split('\n').filter(Boolean), [image]);
  }, 120_000);

  /** The entries of a container's Config.Env its image does not set: what it was given. */
  async function givenEnv(runtimeId: string): Promise<Record<string, string>> {
    const entries = ((await inspect(runtimeId)).Config.Env as string[]).filter((entry) => !imageEnv.has(entry));
    return Object.fromEntries(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  }

  it('compose-started containers get the template env and the compose file defaults; the orchestrator\'s replacement the template env', { timeout: 240_000 }, async () => {
    const flags = ['--runtime', 'docker', '--worker-image', image, '--cluster', clusterName, '--workers', '1', ...cluster.cliFlags];
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...flags], { env: starterEnv, timeoutMs: 180_000 });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    const template = inventory.workers[0]!.template.env;
    expect(template).toEqual({ WORK_MS: '0', ENABLE_CRASH_API: 'false' });
    // docker-compose.worker.yml also sets LOG_LEVEL and MAX_BODY_BYTES, to its defaults when provisioning does not pass them.
    const composeDefaults = { LOG_LEVEL: 'info', MAX_BODY_BYTES: '1048576' };
    for (const c of inventory.containers) {
      const env = await givenEnv(c.runtimeId!);
      expectNoSecrets(env, `the Config.Env of ${c.id}`);
      expect(env, c.id).toEqual({ ...template, ...composeDefaults, ...placement(c) });
    }

    orchestrator = await startOrchestrator(cluster.statePath, [], { env: starterEnv });
    const victim = inventory.containers[1]!;
    await runOk('docker', ['kill', victim.runtimeId!]);
    const replacement = await replaced(orchestrator.url, victim);
    const env = await givenEnv(replacement.runtimeId!);
    expectNoSecrets(env, `the Config.Env of ${replacement.id}'s replacement`);
    expect(env).toEqual({ ...template, ...placement(replacement) });
  });
});

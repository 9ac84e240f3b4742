import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { clientKeysEnv, type TestKey } from '../helpers/client-keys.js';
import { startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';
import { spellings } from '../helpers/path-spellings.js';
import { raw, statusOf } from '../helpers/raw-http.js';

/**
 * The proof a public deployment rests on: the real orchestrator (`npm start`'s build) with an
 * infer key, a read key and an admin token answers nothing but /health to a caller without the
 * right one, in any method and any spelling of any path, and shows no inventory in any answer;
 * with the right one, the same routes work.
 */

const INFER: TestKey = { name: 'app', key: 'orch_locked-infer-key-0123456789abcdefgh', scopes: ['infer'] };
const READ: TestKey = { name: 'prometheus', key: 'orch_locked-read-key-0123456789abcdefgh', scopes: ['read'] };
const ADMIN_TOKEN = 'locked-down-admin-token-0123456789';
/** The container's id: a word no answer has any other reason to contain. */
const CONTAINER = 'inventoryctr7';

type Credential = 'infer' | 'read' | 'admin';
const AUTHORIZATION: Record<Credential, string> = {
  infer: `Bearer ${INFER.key}`,
  read: `Bearer ${READ.key}`,
  admin: `Bearer ${ADMIN_TOKEN}`,
};

/** Every kind of route: the orchestrator's, the admin API's, containers' control routes, forwarded paths; with the credential it needs and what it answers then. */
const ROUTES: Array<{ method: string; path: string; needs: Credential; answers: number[]; body?: string }> = [
  { method: 'POST', path: '/new_request', needs: 'infer', answers: [200], body: '{"text":"hi"}' },
  { method: 'POST', path: '/run_model', needs: 'infer', answers: [200], body: '{"text":"hi"}' },
  { method: 'GET', path: '/favicon.ico', needs: 'infer', answers: [200] },
  { method: 'GET', path: '/', needs: 'infer', answers: [200] },
  { method: 'GET', path: '/healthz', needs: 'infer', answers: [200] },
  { method: 'POST', path: '/api/v1/_crash', needs: 'infer', answers: [404], body: '{}' },
  { method: 'POST', path: '/api/v1/_fault', needs: 'infer', answers: [404], body: '{"mode":"hang"}' },
  { method: 'GET', path: '/status', needs: 'read', answers: [200] },
  { method: 'GET', path: '/metrics', needs: 'read', answers: [200] },
  { method: 'GET', path: '/dashboard', needs: 'read', answers: [200] },
  { method: 'GET', path: '/dashboard/events', needs: 'read', answers: [200] },
  { method: 'POST', path: '/admin/scale', needs: 'admin', answers: [202], body: '{"containers":1}' },
  { method: 'POST', path: '/admin/autoscaler/resume', needs: 'admin', answers: [200] },
  // Ids are case-sensitive: an upper-case spelling names no container (404); the right one is not the orchestrator's to remove (409).
  { method: 'DELETE', path: `/admin/containers/${CONTAINER}`, needs: 'admin', answers: [409, 404] },
  { method: 'DELETE', path: '/admin/workers/w1', needs: 'admin', answers: [409] },
  { method: 'GET', path: '/admin', needs: 'admin', answers: [404] },
];

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** The credentials that open a route needing `needs`: its own, and for read routes the admin token too (provisioning's handover reads /status with it). */
const opens = (needs: Credential): Credential[] => (needs === 'read' ? ['read', 'admin'] : [needs]);

/** Ways to write `path` that some server reads as `path`; the root has fewer. */
const targets = (path: string): string[] => (path === '/' ? ['/', '//', '/./', '/x/..', '/;x', '/?x=1'] : spellings(path).map(([, target]) => target));

let dir: string;
let backend: Backend;
let orchestrator: OrchestratorProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'locked-down-'));
  backend = await startBackend(CONTAINER);
  const statePath = join(dir, 'state.json');
  await writeFile(statePath, JSON.stringify(unmanagedInventory('locked', [backend])));
  orchestrator = await startOrchestrator(statePath, [], { env: { ...clientKeysEnv([INFER, READ]), ORCH_ADMIN_TOKEN: ADMIN_TOKEN } });
});

afterAll(async () => {
  await stopOrchestrator(orchestrator);
  await backend?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** One request as written, on its own connection: the whole answer (head and body) as text. */
async function send(method: string, target: string, authorization?: string, body = ''): Promise<string> {
  const head = [
    `${method} ${target} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: close',
    ...(authorization ? [`Authorization: ${authorization}`] : []),
    ...(body ? ['Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`] : []),
  ];
  return (await raw(orchestrator!.url, [`${head.join('\r\n')}\r\n\r\n${body}`])).answer;
}

/** What in an answer would tell a caller about the cluster: the container's id, its port, the workers' address. */
function inventoryIn(answer: string): string[] {
  return [CONTAINER, '127.0.0.1', new RegExp(`\\b${backend.port}\\b`)].filter((needle) => (typeof needle === 'string' ? answer.includes(needle) : needle.test(answer))).map(String);
}

describe('locked down: with an infer key, a read key and an admin token configured', () => {
  it.each(ROUTES)('$path, every method and spelling, without a key: never 2xx, no inventory, nothing reaches the model', async ({ path, body }) => {
    const before = backend.stats.served;
    const wrong: string[] = [];
    for (const target of targets(path)) {
      for (const method of METHODS) {
        const answer = await send(method, target, undefined, ['POST', 'PUT', 'PATCH'].includes(method) ? (body ?? '{}') : '');
        const status = statusOf(answer);
        if (!(status >= 400 && status < 500)) wrong.push(`${method} ${target}: ${status}`);
        for (const found of inventoryIn(answer)) wrong.push(`${method} ${target}: shows ${found}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(backend.stats.served).toBe(before);
  });

  it.each(ROUTES)('$method $path with the wrong credential: refused, no inventory', async ({ method, path, needs, body }) => {
    const before = backend.stats.served;
    for (const other of (['infer', 'read', 'admin'] as const).filter((c) => !opens(needs).includes(c))) {
      const answer = await send(method, path, AUTHORIZATION[other], body);
      expect([401, 403], `${other} credential`).toContain(statusOf(answer));
      expect(inventoryIn(answer)).toEqual([]);
    }
    expect(backend.stats.served).toBe(before);
  });

  it('answers /status and /metrics to the admin token, and no inference to it', async () => {
    for (const path of ['/status', '/metrics']) expect(statusOf(await send('GET', path, AUTHORIZATION.admin)), path).toBe(200);
    expect(statusOf(await send('POST', '/new_request', AUTHORIZATION.admin, '{"text":"hi"}'))).toBe(401);
  });

  it('answers CONNECT 405 without a key', async () => {
    const answer = await send('CONNECT', '127.0.0.1:22');
    expect(statusOf(answer)).toBe(405);
    expect(inventoryIn(answer)).toEqual([]);
  });

  it('answers /health in any spelling without a key, saying nothing about the inventory', async () => {
    for (const target of targets('/health')) {
      for (const method of ['GET', 'HEAD']) {
        const answer = await send(method, target);
        expect(statusOf(answer), `${method} ${target}`).toBe(200);
        expect(inventoryIn(answer)).toEqual([]);
      }
      const body = JSON.parse((await send('GET', target)).split('\r\n\r\n')[1]!) as Record<string, unknown>;
      expect(body.status).toBe('ok');
      for (const field of ['container', 'containers', 'capacity', 'port', 'ports', 'worker', 'workers']) expect(body).not.toHaveProperty(field);
      // Another method on /health is refused like anything else.
      expect(statusOf(await send('POST', target, undefined, '{}'))).toBe(405);
    }
  });

  it.each(ROUTES)('$method $path in every spelling with its credential: answered as the route does', async ({ method, path, needs, answers, body }) => {
    for (const target of targets(path)) {
      if (path === '/dashboard/events') {
        // A stream that never ends: read its head, then leave.
        const events = await request(`${orchestrator!.url}${target}`, { headers: { authorization: AUTHORIZATION[needs] } });
        expect(answers, target).toContain(events.statusCode);
        events.body.destroy();
        continue;
      }
      expect(answers, target).toContain(statusOf(await send(method, target, AUTHORIZATION[needs], body)));
    }
  });
});

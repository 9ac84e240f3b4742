import { get } from 'node:http';
import { connect } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../helpers/backend.js';
import { run, NETWORK_GUARD } from '../helpers/cli.js';
import { emulatorAddressOnLoopback, GUARD_EXIT_CODE, ROUTE_ENV, routeEmulatorAddresses, takeRefusals } from '../helpers/network-guard.js';

/** How each of Node's clients ends when it is refused: the error it reports. */
const attempts: Record<string, (host: string, port: number) => Promise<string>> = {
  'net.connect': (host, port) => new Promise((resolve) => connect(port, host).once('error', (e) => resolve(e.message)).once('connect', () => resolve('connected'))),
  'http.get': (host, port) => new Promise((resolve) => get({ host, port, path: '/' }).once('error', (e) => resolve(e.message)).once('response', () => resolve('answered'))),
  'undici.request': (host, port) => request(`http://${host}:${port}/`).then(() => 'answered', (e: Error) => e.message),
  fetch: (host, port) => fetch(`http://${host}:${port}/`).then(() => 'answered', (e: Error) => String((e.cause as Error | undefined)?.message ?? e.message)),
};

describe('the test network guard', () => {
  let backend: Backend | undefined;
  afterEach(async () => {
    await backend?.kill();
    backend = undefined;
  });

  it.each(Object.keys(attempts))('refuses %s to an address outside 127/8, and records it to fail the test', async (client) => {
    expect(await attempts[client]!('10.20.30.40', 5000)).toMatch(/test network guard: refusing to connect to 10\.20\.30\.40:5000/);
    expect(takeRefusals()).toEqual(['10.20.30.40:5000']);
  });

  it('lets loopback through', async () => {
    backend = await startBackend('guard-check', { host: '127.0.0.1' });
    expect(await attempts['undici.request']!('127.0.0.1', backend.port)).toBe('answered');
    expect(takeRefusals()).toEqual([]);
  });

  it("routes the emulator's instance addresses to their loopback stand-ins only when asked", async () => {
    expect(emulatorAddressOnLoopback('54.214.7.9')).toBe('127.214.7.9');
    expect(emulatorAddressOnLoopback('54.215.7.9')).toBeUndefined();
    backend = await startBackend('instance', { host: '127.214.7.9' });
    expect(await attempts['http.get']!('54.214.7.9', backend.port)).toMatch(/refusing/);
    expect(takeRefusals()).toEqual([`54.214.7.9:${backend.port}`]);
    const undo = routeEmulatorAddresses();
    try {
      expect(await attempts['http.get']!('54.214.7.9', backend.port)).toBe('answered');
      expect(await attempts['http.get']!('54.215.7.9', backend.port)).toMatch(/refusing/);
      expect(takeRefusals()).toEqual([`54.215.7.9:${backend.port}`]);
    } finally {
      undo();
    }
  });

  it('ends a CLI child that connects elsewhere with exit 97 and one line', async () => {
    const script = "require('node:net').connect(80, '192.0.2.1').on('error', () => {}); setTimeout(() => {}, 5000);";
    const result = await run(process.execPath, ['--import', NETWORK_GUARD, '-e', script]);
    expect(result.code).toBe(GUARD_EXIT_CODE);
    expect(result.stderr.trim()).toBe('test network guard: refusing to connect to 192.0.2.1:80 (tests reach 127.0.0.0/8 only)');
  });

  it('routes in a CLI child when its environment asks', async () => {
    backend = await startBackend('instance', { host: '127.214.7.10' });
    const script = `require('node:http').get('http://54.214.7.10:${backend.port}/health', { agent: false }, (res) => { res.resume(); process.stdout.write(String(res.statusCode)); });`;
    const result = await run(process.execPath, ['--import', NETWORK_GUARD, '-e', script], { env: { ...process.env, [ROUTE_ENV]: '1' } });
    expect(result).toMatchObject({ code: 0, stdout: '200' });
  });
});

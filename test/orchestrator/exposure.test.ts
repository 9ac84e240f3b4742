import { describe, expect, it } from 'vitest';
import { AccessControl, keyHash } from '../../orchestrator/src/access-control.js';
import type { KeyScope } from '../../orchestrator/src/config.js';
import { exposureWarnings, isLoopback } from '../../orchestrator/src/exposure.js';

const accessWith = (...scopes: KeyScope[][]): AccessControl =>
  new AccessControl({
    clientKeys: scopes.map((s, i) => ({ name: `k${i}`, sha256: keyHash(`orch_key-${i}-0123456789abcdef`), scopes: s })),
    clientRatePerSecond: 0,
    clientBurst: undefined,
  });

describe('isLoopback', () => {
  it.each(['127.0.0.1', '127.8.9.10', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LocalHost'])('%s is loopback', (host) => {
    expect(isLoopback(host)).toBe(true);
  });

  it.each(['0.0.0.0', '::', '10.0.0.5', '128.0.0.1', '::ffff:10.0.0.1', 'example.com', 'localhost.example.com'])('%s is not', (host) => {
    expect(isLoopback(host)).toBe(false);
  });
});

describe('exposureWarnings', () => {
  it('lists inference, the inventory and plain HTTP as open without keys or TLS', () => {
    const { loopback, open } = exposureWarnings({ host: '0.0.0.0', tlsCertFile: undefined, adminToken: undefined }, accessWith());
    expect(loopback).toBe(false);
    expect(open).toHaveLength(3);
    expect(open[0]).toMatch(/^inference is open/);
    expect(open[1]).toMatch(/^\/status, \/metrics and \/dashboard are open/);
    expect(open[2]).toMatch(/^plain HTTP/);
  });

  it('drops what a key closes; plain HTTP then names the secrets that cross in clear', () => {
    const { open } = exposureWarnings({ host: '0.0.0.0', tlsCertFile: undefined, adminToken: 'admin-token-0123456789' }, accessWith(['infer']));
    expect(open).toHaveLength(2);
    expect(open[0]).toMatch(/^\/status/);
    expect(open[1]).toMatch(/client keys and the admin token cross the network in clear/);
  });

  it('lists nothing with an infer key, a read key and TLS', () => {
    expect(exposureWarnings({ host: '10.0.0.5', tlsCertFile: 'cert.pem', adminToken: undefined }, accessWith(['infer'], ['read'])).open).toEqual([]);
  });

  it('says whether the host is loopback, whatever is open', () => {
    expect(exposureWarnings({ host: '127.0.0.1', tlsCertFile: undefined, adminToken: undefined }, accessWith())).toMatchObject({ loopback: true, open: expect.any(Array) });
  });
});

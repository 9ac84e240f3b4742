import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../orchestrator/src/errors.js';
import { parseTarget } from '../../orchestrator/src/request-target.js';

describe('parseTarget', () => {
  it.each([
    ['/new_request', 'orchestrator', '/new_request'],
    ['/NEW_REQUEST?x=1', 'orchestrator', '/NEW_REQUEST'],
    ['/dashboard/events', 'orchestrator', '/dashboard/events'],
    ['/dashboard//events/', 'orchestrator', '/dashboard/events'],
    ['/admin', 'admin', '/admin'],
    ['/admin/', 'admin', '/admin'],
    ['/ADMIN/scale', 'admin', '/ADMIN/scale'],
    ['/%61dmin/scale', 'admin', '/admin/scale'],
    ['/%2561dmin/scale', 'admin', '/admin/scale'],
    ['//admin/./scale/', 'admin', '/admin/scale'],
    ['/x/../admin/scale', 'admin', '/admin/scale'],
    ['/../../admin/scale', 'admin', '/admin/scale'],
    ['/admin;jsessionid=1/scale', 'admin', '/admin/scale'],
    ['/admin%2Fscale', 'admin', '/admin/scale'],
    ['/admin%5cscale', 'admin', '/admin/scale'],
    ['/\\admin\\scale', 'admin', '/admin/scale'],
    ['/admin/containers/W1-5000/drain', 'admin', '/admin/containers/W1-5000/drain'],
    ['/api/v1/_crash', 'container-control', '/api/v1/_crash'],
    ['/API/v1/%5Ffault/', 'container-control', '/API/v1/_fault'],
    ['/run_model', 'forward', '/run_model'],
    ['/administrator', 'forward', '/administrator'],
    ['/statuses', 'forward', '/statuses'],
    ['/api/v1/_crashes', 'forward', '/api/v1/_crashes'],
    ['/files/100%25', 'forward', '/files/100%'],
  ])('reads %s as %s %s', (raw, kind, path) => {
    expect(parseTarget(raw)).toMatchObject({ kind, path });
  });

  it('keeps the query string as sent', () => {
    expect(parseTarget('/run_model?a=%2F&b=1')).toEqual({ kind: 'forward', path: '/run_model', search: '?a=%2F&b=1' });
  });

  it.each([
    ['an absolute URL', 'http://127.0.0.1:9/admin/scale'],
    ['an asterisk', '*'],
    ['a leading backslash', '\\admin\\scale'],
    ['a malformed percent-encoding', '/run_model%zz'],
    ['an encoded NUL', '/admin%00/scale'],
    ['an encoded line feed', '/status%0a'],
    ['a fragment', '/status#x'],
  ])('refuses %s with BadRequestError', (_what, raw) => {
    expect(() => parseTarget(raw)).toThrow(BadRequestError);
  });
});

import { describe, expect, it } from 'vitest';
import { BadResponseError, ResponseParser, type ResponseHead } from '../../orchestrator/src/upstream/http1-response-parser.js';

interface Parsed {
  heads: ResponseHead[];
  body: string;
  completed: number;
}

/** Parse `wire` fed in pieces of `step` bytes (every split point is a chance to lose state); `close` ends the connection after. */
function parse(wire: string, { step = wire.length, method = 'POST', close = false } = {}): Parsed {
  const out: Parsed = { heads: [], body: '', completed: 0 };
  const parser = new ResponseParser(
    {
      head: (h) => out.heads.push(h),
      body: (chunk) => (out.body += chunk.toString('latin1')),
      complete: () => out.completed++,
    },
    { maxHeadBytes: 1024, maxLineBytes: 8192 },
  );
  parser.expect(method);
  const bytes = Buffer.from(wire, 'latin1');
  for (let at = 0; at < bytes.length; at += step) parser.push(bytes.subarray(at, at + step));
  if (close) parser.end();
  return out;
}

const ANSWERS: { name: string; wire: string; method?: string; close?: boolean; status: number; body: string; keepAlive: boolean; bodyLength: number | null }[] = [
  {
    name: 'Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
    status: 200, body: '{"ok":true}', keepAlive: true, bodyLength: 11,
  },
  {
    name: 'chunked, with an extension and trailers',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n',
    status: 200, body: 'hello, world', keepAlive: true, bodyLength: null,
  },
  {
    name: 'delimited by the close (HTTP/1.0, no length)',
    wire: 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end',
    close: true, status: 200, body: 'until the end', keepAlive: false, bodyLength: null,
  },
  { name: 'HTTP/1.0 keep-alive', wire: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok', status: 200, body: 'ok', keepAlive: true, bodyLength: 2 },
  { name: 'HTTP/1.1 Connection: close', wire: 'HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy', status: 503, body: 'busy', keepAlive: false, bodyLength: 4 },
  { name: '204 has no body', wire: 'HTTP/1.1 204 No Content\r\n\r\n', status: 204, body: '', keepAlive: true, bodyLength: 0 },
  { name: '304 has no body even with a length', wire: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', status: 304, body: '', keepAlive: true, bodyLength: 0 },
  { name: 'a HEAD answer has no body', method: 'HEAD', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', status: 200, body: '', keepAlive: true, bodyLength: 0 },
  { name: '100 Continue is skipped', wire: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx', status: 201, body: 'x', keepAlive: true, bodyLength: 1 },
  {
    name: 'chunked wins over Content-Length, and the connection is not reused',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    status: 200, body: 'hi', keepAlive: false, bodyLength: null,
  },
  { name: 'an empty reason phrase', wire: 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n', status: 200, body: '', keepAlive: true, bodyLength: 0 },
];

describe('HTTP/1.1 response parser', () => {
  for (const a of ANSWERS) {
    it(`reads ${a.name}, whole or one byte at a time`, () => {
      for (const step of [a.wire.length, 7, 1]) {
        const out = parse(a.wire, { step, method: a.method, close: a.close });
        expect(out.completed, `step ${step}`).toBe(1);
        expect(out.heads).toHaveLength(1);
        expect(out.heads[0]).toMatchObject({ statusCode: a.status, keepAlive: a.keepAlive, bodyLength: a.bodyLength });
        expect(out.body).toBe(a.body);
      }
    });
  }

  it('keeps repeated fields: Set-Cookie as a list, others joined', () => {
    const out = parse('HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nVary: a\r\nVary: b\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n');
    expect(out.heads[0]!.headers).toEqual({ 'set-cookie': ['a=1', 'b=2'], vary: 'a, b', 'x-empty': '', 'content-length': '0' });
  });

  it('reads answers one after the other on one connection', () => {
    const out: string[] = [];
    const parser = new ResponseParser({ head: () => {}, body: (c) => out.push(c.toString()), complete: () => out.push('|') }, { maxHeadBytes: 1024, maxLineBytes: 8192 });
    parser.expect('POST');
    parser.push(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na'));
    expect(parser.active).toBe(false);
    parser.expect('POST');
    expect(parser.started).toBe(false);
    parser.push(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n'));
    expect(out.join('')).toBe('a|b|');
  });

  const BROKEN: { name: string; wire: string; close?: boolean; error: RegExp }[] = [
    { name: 'a status line that is not HTTP/1.x', wire: 'HTTP/2 200\r\n\r\n', error: /bad status line/ },
    { name: 'a status code out of range', wire: 'HTTP/1.1 099 Odd\r\n\r\n', error: /bad status line/ },
    { name: 'differing Content-Length values', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\na', error: /bad Content-Length/ },
    { name: 'a negative Content-Length', wire: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', error: /bad Content-Length/ },
    { name: 'a space before the colon', wire: 'HTTP/1.1 200 OK\r\nX-Bad : 1\r\n\r\n', error: /bad header line/ },
    { name: 'a folded header line', wire: 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n', error: /bad header line/ },
    { name: 'a control character in a value', wire: 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n', error: /control character/ },
    { name: 'a head over the limit', wire: `HTTP/1.1 200 OK\r\nX-Big: ${'x'.repeat(2000)}\r\n\r\n`, error: /head over 1024 bytes/ },
    { name: 'a bad chunk size', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', error: /bad chunk size/ },
    { name: 'chunk data longer than declared', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n', error: /longer than its declared size/ },
    { name: 'bytes beyond the answer', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab', error: /beyond its answer/ },
    { name: 'a switch of protocols', wire: 'HTTP/1.1 101 Switching Protocols\r\n\r\n', error: /switched protocols/ },
    { name: 'a close in the middle of a sized body', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', close: true, error: /closed in the middle/ },
    { name: 'a close before any answer', wire: '', close: true, error: /closed before any answer/ },
  ];
  for (const b of BROKEN) {
    it(`refuses ${b.name}`, () => {
      for (const step of [Math.max(1, b.wire.length), 1]) {
        const run = (): Parsed => parse(b.wire, { step, close: b.close });
        expect(run, `step ${step}`).toThrow(BadResponseError);
        expect(run).toThrow(b.error);
      }
    });
  }
});

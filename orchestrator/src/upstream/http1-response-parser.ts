/** A container's answer broke HTTP/1.1 framing: the connection cannot be trusted any more. */
export class BadResponseError extends Error {
  readonly code = 'UPSTREAM_BAD_RESPONSE';

  constructor(message: string) {
    super(message);
    this.name = 'BadResponseError';
  }
}

export type ResponseHeaders = Record<string, string | string[]>;

export interface ResponseHead {
  statusCode: number;
  headers: ResponseHeaders;
  /** The body's size when the answer declares it (0 for answers without a body); null when chunked or delimited by the close. */
  bodyLength: number | null;
  /** Whether the connection may carry another request after this answer. */
  keepAlive: boolean;
}

export interface ResponseHandlers {
  head(head: ResponseHead): void;
  body(chunk: Buffer): void;
  complete(): void;
}

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// A field line: a token, a colon, optional blanks, then a value of visible characters, spaces and tabs (never other control characters), then the line's end.
const FIELD = /([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\0-\x08\x0a-\x1f\x7f]*)(?:\r\n|$)/y;
const DIGITS = /^\d{1,15}$/;
const CHUNK_SIZE = /^([0-9a-fA-F]{1,15})[ \t]*(?:;.*)?$/;
/** The parser's limits, in bytes. */
export interface ParserLimits {
  /** Largest answer head (status line and fields). */
  maxHeadBytes: number;
  /** Longest chunk-size or trailer line. */
  maxLineBytes: number;
}

type Stage = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'close' | 'done';

/**
 * An incremental HTTP/1.1 response parser (RFC 9112) for one answer at a time: status line and
 * fields, then a body framed by Content-Length, chunked coding or the connection's close. Interim
 * 1xx answers are skipped. It never buffers a body: body bytes go to the handlers as they arrive.
 */
export class ResponseParser {
  readonly #handlers: ResponseHandlers;
  readonly #maxHeadBytes: number;
  readonly #maxLineBytes: number;
  #stage: Stage = 'done';
  #noBody = false;
  /** Bytes of an incomplete head or line, waiting for the rest. */
  #carry: Buffer | null = null;
  /** Body bytes still expected (Content-Length or the current chunk). */
  #remaining = 0;

  constructor(handlers: ResponseHandlers, limits: ParserLimits) {
    this.#handlers = handlers;
    this.#maxHeadBytes = limits.maxHeadBytes;
    this.#maxLineBytes = limits.maxLineBytes;
  }

  /** Expect the answer to a request with this method (a HEAD answer has no body). */
  expect(method: string): void {
    this.#stage = 'head';
    this.#noBody = method === 'HEAD';
    this.#carry = null;
    this.#remaining = 0;
  }

  /** Whether an answer is expected or under way. */
  get active(): boolean {
    return this.#stage !== 'done';
  }

  /** Whether any byte of the current answer has arrived. */
  get started(): boolean {
    return this.#stage !== 'head' || this.#carry !== null;
  }

  /** Feed bytes from the connection. Throws BadResponseError, including for bytes past the end of the answer. */
  push(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      switch (this.#stage) {
        case 'head':
          at = this.#readHead(data, at);
          break;
        case 'length':
          at = this.#takeBody(data, at);
          if (this.#remaining === 0) this.#finish();
          break;
        case 'chunk-size':
          at = this.#readLine(data, at, (line) => {
            const m = CHUNK_SIZE.exec(line);
            if (!m) throw new BadResponseError(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`);
            this.#remaining = parseInt(m[1]!, 16);
            this.#stage = this.#remaining === 0 ? 'trailers' : 'chunk-data';
          });
          break;
        case 'chunk-data':
          at = this.#takeBody(data, at);
          if (this.#remaining === 0) this.#stage = 'chunk-end';
          break;
        case 'chunk-end':
          at = this.#readLine(data, at, (line) => {
            if (line !== '') throw new BadResponseError('chunk data longer than its declared size');
            this.#stage = 'chunk-size';
          });
          break;
        case 'trailers':
          // Trailer fields are read past and dropped: a proxy that buffers or re-frames cannot pass them on.
          at = this.#readLine(data, at, (line) => {
            if (line === '') this.#finish();
          });
          break;
        case 'close':
          this.#handlers.body(at === 0 ? data : data.subarray(at));
          at = data.length;
          break;
        case 'done':
          throw new BadResponseError('the container sent bytes beyond its answer');
      }
    }
  }

  /** The connection closed. Completes an answer delimited by the close; throws if one was cut short. */
  end(): void {
    if (this.#stage === 'close') {
      this.#finish();
      return;
    }
    if (this.#stage !== 'done') throw new BadResponseError(this.started ? 'the connection closed in the middle of the answer' : 'the connection closed before any answer');
  }

  /** Pass on up to `#remaining` body bytes from `at`; returns where they end. */
  #takeBody(data: Buffer, at: number): number {
    const take = Math.min(this.#remaining, data.length - at);
    this.#remaining -= take;
    this.#handlers.body(data.subarray(at, at + take));
    return at + take;
  }

  #finish(): void {
    this.#stage = 'done';
    this.#handlers.complete();
  }

  /** Read a head from `data` at `at`; returns where its bytes end. */
  #readHead(data: Buffer, at: number): number {
    let buffer = data;
    let offset = at;
    if (this.#carry) {
      buffer = Buffer.concat([this.#carry, data.subarray(at)]);
      offset = 0;
    }
    // The terminator may straddle the previous chunk and this one: search from a little before the join.
    const end = buffer.indexOf(HEAD_END, this.#carry ? Math.max(0, this.#carry.length - 3) : offset);
    if (end === -1) {
      if (buffer.length - offset > this.#maxHeadBytes) throw new BadResponseError(`answer head over ${this.#maxHeadBytes} bytes`);
      this.#carry = offset === 0 ? Buffer.from(buffer) : Buffer.from(buffer.subarray(offset));
      return data.length;
    }
    if (end - offset > this.#maxHeadBytes) throw new BadResponseError(`answer head over ${this.#maxHeadBytes} bytes`);
    const consumed = this.#carry ? end + 4 - this.#carry.length + at : end + 4;
    this.#carry = null;
    this.#startBody(parseHead(buffer.toString('latin1', offset, end), this.#noBody));
    return consumed;
  }

  #startBody(head: ResponseHead & { framing: 'length' | 'chunked' | 'close' | 'interim' }): void {
    if (head.framing === 'interim') return; // A 1xx answer: the real one follows.
    this.#handlers.head(head);
    if (head.framing === 'chunked') this.#stage = 'chunk-size';
    else if (head.framing === 'close') this.#stage = 'close';
    else if (head.bodyLength === 0) this.#finish();
    else {
      this.#remaining = head.bodyLength!;
      this.#stage = 'length';
    }
  }

  /** Read one CRLF-terminated line (bounded) and hand it over; returns where it ends. */
  #readLine(data: Buffer, at: number, onLine: (line: string) => void): number {
    const buffer = this.#carry ? Buffer.concat([this.#carry, data.subarray(at)]) : data;
    const from = this.#carry ? 0 : at;
    const end = buffer.indexOf(CRLF, from);
    if (end === -1) {
      if (buffer.length - from > this.#maxLineBytes) throw new BadResponseError(`chunked framing line over ${this.#maxLineBytes} bytes`);
      this.#carry = Buffer.from(buffer.subarray(from));
      return data.length;
    }
    if (end - from > this.#maxLineBytes) throw new BadResponseError(`chunked framing line over ${this.#maxLineBytes} bytes`);
    const consumed = this.#carry ? end + 2 - this.#carry.length + at : end + 2;
    this.#carry = null;
    onLine(buffer.toString('latin1', from, end));
    return consumed;
  }
}

/** Parse a status line and fields, and decide how the body is framed (RFC 9112 §6.3). */
function parseHead(text: string, noBody: boolean): ResponseHead & { framing: 'length' | 'chunked' | 'close' | 'interim' } {
  const statusEnd = text.indexOf('\r\n');
  const statusLine = statusEnd === -1 ? text : text.slice(0, statusEnd);
  const status = STATUS_LINE.exec(statusLine);
  if (!status) throw new BadResponseError(`bad status line ${JSON.stringify(statusLine.slice(0, 60))}`);
  const minor = status[1]!;
  const statusCode = Number(status[2]);
  const headers: ResponseHeaders = {};
  // One sticky match per field line: its name (a token) and its value (no control character), up to the line's end.
  FIELD.lastIndex = statusEnd === -1 ? text.length : statusEnd + 2;
  while (FIELD.lastIndex < text.length) {
    const at = FIELD.lastIndex;
    const field = FIELD.exec(text);
    if (!field) {
      const end = text.indexOf('\r\n', at);
      throw badField(text.slice(at, end === -1 ? undefined : end));
    }
    const key = field[1]!.toLowerCase();
    const raw = field[2]!;
    const value = raw.endsWith(' ') || raw.endsWith('\t') ? raw.trimEnd() : raw;
    const prior = headers[key];
    if (prior === undefined) headers[key] = key === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else headers[key] = `${prior}, ${value}`;
  }
  const connection = headers.connection === undefined ? [] : tokens(headers.connection);
  let keepAlive = minor === '1' ? !connection.includes('close') : connection.includes('keep-alive');

  if (statusCode < 200) {
    if (statusCode === 101) throw new BadResponseError('the container switched protocols, which was never asked for');
    return { statusCode, headers, bodyLength: 0, keepAlive, framing: 'interim' };
  }
  if (noBody || statusCode === 204 || statusCode === 304) return { statusCode, headers, bodyLength: 0, keepAlive, framing: 'length' };
  const length = headers['content-length'];
  if (headers['transfer-encoding'] !== undefined) {
    // Both framings at once is how request smuggling starts: believe the coding, then close (RFC 9112 §6.3).
    if (length !== undefined) keepAlive = false;
    const codings = tokens(headers['transfer-encoding']);
    if (codings[codings.length - 1] === 'chunked') return { statusCode, headers, bodyLength: null, keepAlive, framing: 'chunked' };
    return { statusCode, headers, bodyLength: null, keepAlive: false, framing: 'close' };
  }
  if (length !== undefined) {
    // Repeated equal values (`5, 5`) are one length; anything else is an error.
    const values = typeof length === 'string' && DIGITS.test(length) ? [length] : String(length).split(',').map((v) => v.trim());
    if (!values.every((v) => DIGITS.test(v) && v === values[0])) throw new BadResponseError(`bad Content-Length ${JSON.stringify(length)}`);
    return { statusCode, headers, bodyLength: Number(values[0]), keepAlive, framing: 'length' };
  }
  return { statusCode, headers, bodyLength: null, keepAlive: false, framing: 'close' };
}

/** The comma-separated, case-insensitive tokens of a field value. */
const tokens = (value: string | string[]): string[] =>
  String(value)
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);

/** Why a field line did not parse: a control character in its value, or no `name:` at its start. */
function badField(line: string): BadResponseError {
  const colon = line.indexOf(':');
  if (colon > 0 && TOKEN.test(line.slice(0, colon))) return new BadResponseError(`control character in header ${line.slice(0, colon)}`);
  return new BadResponseError(`bad header line ${JSON.stringify(line.slice(0, 60))}`);
}

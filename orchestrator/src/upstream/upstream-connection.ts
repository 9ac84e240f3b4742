import { connect, type Socket } from 'node:net';
import { BadResponseError, ResponseParser, type ParserLimits, type ResponseHead } from './http1-response-parser.js';

/** One request to a container, as the proxy and the health checker send it. */
export interface UpstreamRequest {
  method: string;
  /** Path with query string. */
  path: string;
  headers: Record<string, string | string[]>;
  body: Buffer | undefined;
  /** Aborts the call (for health probes; never for client requests, see proxy-handler). */
  signal?: AbortSignal;
}

/** Why a call to a container failed before its answer was complete. */
export class UpstreamFailure extends Error {
  /** True when the request provably never reached the container (no connection was made). */
  readonly neverSent: boolean;
  /** True when the container did not answer in time. */
  readonly timedOut: boolean;
  readonly code: string;

  constructor(cause: unknown, code = String((cause as { code?: unknown })?.code ?? 'UNKNOWN')) {
    super(`${code}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'UpstreamFailure';
    this.code = code;
    this.neverSent = CONNECT_ERRORS.has(code);
    this.timedOut = code === 'UPSTREAM_TIMEOUT';
  }
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UPSTREAM_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND']);

/** What a call tells its caller, in order: head, body chunks, then complete; or fail, at most once, instead. */
export interface CallSink {
  head(head: ResponseHead): void;
  body(chunk: Buffer): void;
  complete(): void;
  fail(error: UpstreamFailure): void;
}

export interface ConnectionOptions extends ParserLimits {
  /** Longest silence while a call is under way (waiting for the head, or between body chunks), in ms. */
  timeoutMs: number;
  /** Longest wait for the connection to open, in ms. */
  connectTimeoutMs: number;
  /** An idle connection is closed after this long (ms), before the container's own keep-alive timeout can race a new request. */
  idleTimeoutMs: number;
}

export interface ConnectionEvents {
  /** The call finished and the connection can take another. */
  idle(connection: UpstreamConnection): void;
  /** The connection is gone for good. */
  closed(connection: UpstreamConnection): void;
}

/** Where every connection's reads land, one at a time (JavaScript runs one callback at a time). */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Characters that would split a request head: callers pass values node's own parser accepted, so this only guards against bugs. */
const LINE_BREAK = /[\r\n]/;

function checked(value: string): string {
  if (LINE_BREAK.test(value)) throw new Error('a request line or header value holds a line break');
  return value;
}

/**
 * One keep-alive HTTP/1.1 connection to a container, one call at a time. Writing a request is
 * synchronous: a container freed by an answer gets its next request before the answer is even
 * passed on to the client, with no event-loop turn in between.
 */
export class UpstreamConnection {
  readonly #socket: Socket;
  readonly #options: ConnectionOptions;
  readonly #events: ConnectionEvents;
  readonly #hostHeader: string;
  readonly #parser: ResponseParser;
  #sink: CallSink | undefined;
  #connected = false;
  #closed = false;
  /** Whether the answer under way lets the connection be reused. */
  #keepAlive = false;
  #connectTimer: NodeJS.Timeout | undefined;

  constructor(host: string, port: number, options: ConnectionOptions, events: ConnectionEvents) {
    this.#options = options;
    this.#events = events;
    this.#hostHeader = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.#parser = new ResponseParser(
      {
        head: (head) => {
          this.#keepAlive = head.keepAlive;
          this.#sink?.head(head);
        },
        // The read buffer is reused by the next read: a body chunk the caller keeps must be its own copy.
        body: (chunk) => this.#sink?.body(Buffer.from(chunk)),
        complete: () => this.#complete(),
      },
      options,
    );
    // Reads land in one shared buffer, handed straight to the parser: no stream machinery and no
    // new buffer per read (Node's `onread`). What outlives the read is copied: a head split across
    // reads by the parser, body chunks above.
    const onread = {
      buffer: READ_BUFFER,
      callback: (bytes: number): boolean => {
        this.#onData(READ_BUFFER.subarray(0, bytes));
        // false would pause the socket: a streamed answer's reader pauses it itself when behind.
        return true;
      },
    };
    this.#socket = connect({ host, port, noDelay: true, onread });
    this.#connectTimer = setTimeout(() => this.#fail(new UpstreamFailure(new Error(`no connection within ${options.connectTimeoutMs} ms`), 'UPSTREAM_CONNECT_TIMEOUT')), options.connectTimeoutMs);
    this.#socket
      .once('connect', () => {
        clearTimeout(this.#connectTimer);
        this.#connected = true;
        this.#socket.setTimeout(this.#sink ? options.timeoutMs : options.idleTimeoutMs);
      })
      .on('timeout', () => this.#onTimeout())
      .on('end', () => this.#onEnd())
      .on('error', (error) => this.#fail(new UpstreamFailure(error)))
      .on('close', () => this.#fail(new UpstreamFailure(new Error('the connection closed'), 'UPSTREAM_CLOSED')));
  }

  /** Whether it can take a call now. */
  get idle(): boolean {
    return !this.#sink && !this.#closed;
  }

  /** Write the request now (queued by the socket until connected) and report the answer to `sink`. */
  send(request: UpstreamRequest, sink: CallSink): void {
    if (!this.idle) throw new Error('an upstream connection takes one call at a time');
    let head = `${request.method} ${checked(request.path)} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\n`;
    for (const name in request.headers) {
      const value = request.headers[name]!;
      if (typeof value === 'string') head += `${name}: ${checked(value)}\r\n`;
      else for (const v of value) head += `${name}: ${checked(v)}\r\n`;
    }
    const body = request.body;
    if (body) head += `content-length: ${body.length}\r\n`;
    head += '\r\n';
    this.#sink = sink;
    this.#parser.expect(request.method);
    if (this.#connected) this.#socket.setTimeout(this.#options.timeoutMs);
    // One write, one syscall: a model request is usually small.
    if (!body || body.length === 0) this.#socket.write(head, 'latin1');
    else if (body.length <= 16 * 1024) this.#socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
    else {
      this.#socket.cork();
      this.#socket.write(head, 'latin1');
      this.#socket.write(body);
      this.#socket.uncork();
    }
  }

  /** Stop reading (the reader of a streamed answer is behind). */
  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Close it; a call under way fails with `error`. */
  destroy(error: UpstreamFailure): void {
    this.#fail(error);
  }

  #onData(chunk: Buffer): void {
    if (!this.#sink) {
      this.#fail(new UpstreamFailure(new BadResponseError('the container sent bytes while no request was open')));
      return;
    }
    try {
      this.#parser.push(chunk);
    } catch (error) {
      this.#fail(new UpstreamFailure(error));
    }
  }

  #onEnd(): void {
    if (!this.#sink) return; // An idle connection the container closed: 'close' follows.
    try {
      this.#parser.end();
    } catch (error) {
      this.#fail(new UpstreamFailure(error, 'UPSTREAM_CLOSED'));
    }
  }

  #onTimeout(): void {
    if (!this.#sink) this.#fail(new UpstreamFailure(new Error('idle'), 'UPSTREAM_IDLE'));
    else this.#fail(new UpstreamFailure(new Error(`no answer within ${this.#options.timeoutMs} ms`), 'UPSTREAM_TIMEOUT'));
  }

  /** The answer is complete: free the connection first (if it may be reused), then tell the caller. */
  #complete(): void {
    const sink = this.#sink!;
    this.#sink = undefined;
    if (this.#keepAlive) {
      this.#socket.setTimeout(this.#options.idleTimeoutMs);
      this.#events.idle(this);
    } else this.#close();
    sink.complete();
  }

  /** Fail the call under way, if any, and close for good (idempotent). */
  #fail(error: UpstreamFailure): void {
    const sink = this.#sink;
    this.#sink = undefined;
    this.#close();
    sink?.fail(error);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#connectTimer);
    this.#socket.destroy();
    this.#events.closed(this);
  }
}

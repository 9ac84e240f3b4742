import type { Duplex } from 'node:stream';

/** What a client that broke HTTP before it made a request is told, by the parser's or the server's error code. */
function answerFor(error: NodeJS.ErrnoException): SocketAnswer {
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, reason: 'Request Header Fields Too Large', error: 'HEADERS_TOO_LARGE', message: 'the request line and headers are larger than maxHeaderBytes' };
  }
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { status: 408, reason: 'Request Timeout', error: 'REQUEST_TIMEOUT', message: 'the request did not arrive in time (clientHeadersTimeoutMs or clientRequestTimeoutMs)' };
  }
  return { status: 400, reason: 'Bad Request', error: 'BAD_REQUEST', message: `malformed HTTP request (${error.code ?? 'parse error'})` };
}

/** A JSON error written straight to a socket, outside any request: the status line and the usual body shape. */
export interface SocketAnswer {
  status: number;
  reason: string;
  error: string;
  message: string;
}

/** What a CONNECT request gets: this server forwards requests to its containers only, never tunnels. */
export const CONNECT_REFUSED: SocketAnswer = {
  status: 405,
  reason: 'Method Not Allowed',
  error: 'METHOD_NOT_ALLOWED',
  message: 'CONNECT is not allowed: this is not a forward proxy',
};

/** Sockets this module answered, with the status: a request still reading its body there was answered by the server, not by a container. */
const answered = new WeakMap<Duplex, number>();

/** The status written straight to `socket` by answerOnSocket, if any. */
export const statusSentOn = (socket: Duplex): number | undefined => answered.get(socket);

/** Write `answer` and close the connection (its framing is lost or was never HTTP to begin with). */
export function answerOnSocket(socket: Duplex, answer: SocketAnswer): { status: number; error: string } {
  answered.set(socket, answer.status);
  const body = JSON.stringify({ error: answer.error, message: answer.message });
  socket.end(
    `HTTP/1.1 ${answer.status} ${answer.reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  return { status: answer.status, error: answer.error };
}

/**
 * The server's `clientError` handler: a malformed, oversized or too-slow request gets the same
 * JSON error shape as every other error, then the connection closes (its framing is lost).
 * Returns what it answered, or null when the connection was already gone.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): { status: number; error: string } | null {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return null;
  }
  return answerOnSocket(socket, answerFor(error));
}

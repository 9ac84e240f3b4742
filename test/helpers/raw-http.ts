import { connect } from 'node:net';

/**
 * Send `chunks` on a raw connection (each after `gapMs`), then read until the server closes.
 * Resolves with what came back and how long the connection lasted. For requests no HTTP client
 * would send: odd targets, missing or doubled headers, slow or broken framing.
 */
export function raw(url: string, chunks: string[], gapMs = 0): Promise<{ answer: string; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(Number(port), hostname);
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', reject);
    socket.on('close', () => resolve({ answer, ms: performance.now() - started }));
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        // Pacing is the behaviour under test here (a slow client), not a wait for a condition.
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

/** The status code of a raw HTTP/1.1 answer. */
export const statusOf = (answer: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);

/** A raw answer's header (lower-case name), or undefined. */
export const headerOf = (answer: string, name: string): string | undefined =>
  new RegExp(`\\r\\n${name}: ([^\\r]*)`, 'i').exec(answer.slice(0, answer.indexOf('\r\n\r\n') + 2))?.[1];

/** The JSON body of a raw answer (not chunked). */
export const jsonOf = <T = { error: string; message: string }>(answer: string): T => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as T;

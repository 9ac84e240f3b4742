import { createServer } from 'node:net';

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A base port such that base+offset is free on 127.0.0.1 for every offset (offsets < 1000), for a
 * cluster whose ports the config lays out from a base. Picked at random between 20000 and 31000: a
 * developer's cluster on 5000 is left alone, and the range stays below the ephemeral ports, which
 * a client socket could take while a killed container's port waits for its replacement.
 */
export async function freeBasePort(offsets: readonly number[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 11_000);
    if ((await Promise.all(offsets.map((offset) => isFree(base + offset)))).every(Boolean)) return base;
  }
  throw new Error('no free port range found between 20000 and 32000');
}

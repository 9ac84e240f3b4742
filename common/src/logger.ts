import { pino, type Logger } from 'pino';

export type { Logger };

/** Keys whose values are secrets, redacted at the top level and one level down. */
const SECRET_KEYS = ['token', 'adminToken', 'privateKey', 'password', 'secretAccessKey', 'sessionToken', 'authorization'];

/** A JSON line logger for one component; secrets are redacted by key name at the top level and one level down. */
export function createLogger(name: string, level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      redact: { paths: SECRET_KEYS.flatMap((key) => [key, `*.${key}`]), censor: '[redacted]' },
    },
    destination,
  );
}

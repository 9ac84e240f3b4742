import { pino, type Logger } from 'pino';

export type { Logger };

/** A JSON line logger for one component; secrets are redacted by key name wherever they appear. */
export function createLogger(name: string, level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      redact: { paths: ['*.token', '*.privateKey', '*.password', '*.secretAccessKey', 'token', 'privateKey'], censor: '[redacted]' },
    },
    destination,
  );
}

import { AppError } from './errors.js';

/**
 * Run a CLI entry: any error becomes one line on stderr and a non-zero exit
 * (2 for usage and config errors, 1 otherwise).
 */
export function runCli(main: () => Promise<number | void>): void {
  main().then(
    (code) => {
      process.exitCode = typeof code === 'number' ? code : 0;
    },
    (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      const code = error instanceof AppError ? error.code : 'ERROR';
      process.stderr.write(`error: ${message.split('\n')[0]} [${code}]\n`);
      process.exitCode = error instanceof AppError && (error.code === 'USAGE' || error.code === 'CONFIG_INVALID') ? 2 : 1;
    },
  );
}

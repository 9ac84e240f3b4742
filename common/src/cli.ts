import { AppError } from './errors.js';
import { parseArgsOrUsage } from './cli-flags.js';

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

type FlagOptions = Record<string, { type: 'string' | 'boolean'; short?: string }>;
type FlagValues<O extends FlagOptions> = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };

/**
 * runCli for a command taking flags only: unknown flags and positionals are usage errors, and
 * `--help`/`-h` prints `help` and exits 0 without running `main`.
 */
export function runFlagsCli<const O extends FlagOptions>(help: string, options: O, main: (flags: FlagValues<O>) => Promise<number | void>): void {
  runCli(async () => {
    const { values } = parseArgsOrUsage<{ args: string[]; options: FlagOptions; strict: true; allowPositionals: false }>({
      args: process.argv.slice(2),
      strict: true,
      allowPositionals: false,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      process.stdout.write(help);
      return 0;
    }
    return main(values as FlagValues<O>);
  });
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { toKebab } from './config-loader.js';
import { UsageError } from './errors.js';

/** node's parseArgs, with its errors turned into a one-line UsageError (exit 2). */
export function parseArgsOrUsage<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0]} (see --help)`);
  }
}

export interface ParsedFlags {
  /** Values of config keys given as flags, keyed by config key (camelCase). */
  config: Record<string, string | boolean>;
  /** `--config FILE`, if given. */
  configFile: string | undefined;
  help: boolean;
  /** Boolean switches named in `switches`, keyed as given. */
  switches: Record<string, boolean>;
  /** Values of the string options named in `strings` (not config keys), keyed as given; absent when not given. */
  strings: Record<string, string | undefined>;
  positionals: string[];
}

/**
 * Parse `--kebab-case value` flags for every config key (`booleanKeys` as bare switches), plus
 * `--config FILE`, `--help`, extra boolean `switches` and extra string options `strings`. Unknown flags are a UsageError.
 */
export function parseConfigFlags(
  args: string[],
  configKeys: readonly string[],
  options: { switches?: readonly string[]; booleanKeys?: readonly string[]; strings?: readonly string[] } = {},
): ParsedFlags {
  const switches = options.switches ?? [];
  const strings = options.strings ?? [];
  const booleanKeys = new Set(options.booleanKeys ?? []);
  const byFlag = new Map(configKeys.map((key) => [toKebab(key), key]));
  const { values, positionals } = parseArgsOrUsage({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      ...Object.fromEntries([...byFlag].map(([flag, key]) => [flag, { type: booleanKeys.has(key) ? ('boolean' as const) : ('string' as const) }])),
      ...Object.fromEntries(switches.map((name) => [name, { type: 'boolean' as const }])),
      ...Object.fromEntries(strings.map((name) => [name, { type: 'string' as const }])),
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  // The options are built from the schema at run time, so parseArgs cannot type them.
  const all = values as Record<string, string | boolean | undefined>;
  const config: Record<string, string | boolean> = {};
  for (const [flag, key] of byFlag) {
    const value = all[flag];
    if (value !== undefined) config[key] = value;
  }
  return {
    config,
    configFile: all.config as string | undefined,
    help: all.help === true,
    switches: Object.fromEntries(switches.map((name) => [name, all[name] === true])),
    strings: Object.fromEntries(strings.map((name) => [name, all[name] as string | undefined])),
    positionals,
  };
}

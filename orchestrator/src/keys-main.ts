import { text } from 'node:stream/consumers';
import { runCli } from '../../common/src/cli.js';
import { parseArgsOrUsage } from '../../common/src/cli-flags.js';
import { UsageError } from '../../common/src/errors.js';
import { CLIENT_KEY_SYNTAX, keyHash, newClientKey } from './access-control.js';
import { clientKeySchema, type ClientKeyEntry } from './config.js';

const HELP = `Usage: npm run keys -- new NAME [--scopes infer,read] [--rate N] [--burst N]
       npm run keys -- hash NAME [--scopes infer,read] [--rate N] [--burst N] < KEYFILE

new    make a client key: the key alone on stdout (KEY=$(npm run -s keys -- new app)),
       its clientKeys entry on stderr
hash   the clientKeys entry of a key of your own, read from stdin, on stdout

The entry holds the key's name and SHA-256, never the key. Add it to clientKeys in the
orchestrator's config file and send the orchestrator SIGHUP (or restart it).

Options:
  --scopes <list>   infer (the model), read (/status, /metrics, /dashboard)   default infer
  --rate <n>        this key's requests per second            default clientRatePerSecond
  --burst <n>       this key's requests at once over its rate  default clientBurst
  --help            show this text

Exits 2 on bad input.
`;

/** Which flag (or argument) sets each field of the entry, for error messages. */
const SOURCE_OF: Record<string, string> = { name: 'NAME', scopes: '--scopes', ratePerSecond: '--rate', burst: '--burst' };

/** The clientKeys entry of `key`, validated as the orchestrator's config validates it. */
function entryOf(name: string, key: string, flags: { scopes?: string; rate?: string; burst?: string }): ClientKeyEntry {
  const parsed = clientKeySchema.safeParse({
    name,
    sha256: keyHash(key),
    scopes: flags.scopes === undefined ? undefined : [...new Set(flags.scopes.split(',').map((s) => s.trim()))],
    ratePerSecond: flags.rate === undefined ? undefined : Number(flags.rate),
    burst: flags.burst === undefined ? undefined : Number(flags.burst),
  });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new UsageError(`${SOURCE_OF[String(issue.path[0])] ?? String(issue.path[0])}: ${issue.message}`);
}

runCli(async () => {
  const { values, positionals } = parseArgsOrUsage({
    args: process.argv.slice(2),
    allowPositionals: true,
    strict: true,
    options: { scopes: { type: 'string' }, rate: { type: 'string' }, burst: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [command, name, ...extra] = positionals;
  if ((command !== 'new' && command !== 'hash') || name === undefined || extra.length > 0) {
    throw new UsageError('expected `new NAME` or `hash NAME` (see --help)');
  }
  if (command === 'new') {
    const key = newClientKey();
    const entry = entryOf(name, key, values);
    process.stderr.write(`add this entry to clientKeys, then send the orchestrator SIGHUP:\n${JSON.stringify(entry)}\n`);
    process.stdout.write(`${key}\n`);
    return 0;
  }
  if (process.stdin.isTTY) throw new UsageError('hash reads the key from stdin: pipe it in (npm run -s keys -- hash NAME < KEYFILE)');
  const key = (await text(process.stdin)).replace(/\r?\n$/, '');
  if (!CLIENT_KEY_SYNTAX.test(key)) throw new UsageError('stdin: expected one key of 16 to 256 printable ASCII characters, without spaces');
  process.stdout.write(`${JSON.stringify(entryOf(name, key, values))}\n`);
  return 0;
});

import { writeFile } from 'node:fs/promises';
import { runFlagsCli } from '../../common/src/cli.js';
import { AppError } from '../../common/src/errors.js';
import { DEFAULT_BODY, DEFAULT_URL, MAX_CONCURRENCY, MAX_REQUESTS, MAX_THREADS, validateOptions } from './options.js';
import { formatHtmlReport } from './html-report.js';
import { formatResult } from './print-result.js';
import { createProgressDisplay } from './progress.js';
import { runLoad } from './run-load.js';

const HELP = `Usage: npm run load -- [options]

Sends N requests from T worker threads (keep-alive connections, C requests in flight in all),
then prints status codes, errors, throughput, latency percentiles and requests per container
(from the x-served-by header).

Options:
  --url <url>           target                          default ${DEFAULT_URL}
  --requests <n>        requests in all (1-${MAX_REQUESTS})    default 100
  --threads <n>         worker threads (1-${MAX_THREADS})            default 4
  --concurrency <n>     requests in flight in all (1-${MAX_CONCURRENCY}) default = threads
  --method <method>     GET, POST, PUT, PATCH, DELETE, HEAD   default POST
  --body <json>         body, sent as application/json  default ${DEFAULT_BODY}
  --timeout-ms <ms>     deadline of one request         default 30000
  --json <file>         also write the result as JSON to <file> (- for stdout; the summary then goes to stderr)
  --report <file.html>  also write an HTML report: latency percentiles and throughput per second,
                        requests per container
  --tolerate-errors     exit 0 even when requests failed
  --no-progress         no progress bar or progress lines on stderr
  --help                show this text

Environment:
  ORCHESTRATOR_KEY      client key (infer scope) sent as Authorization: Bearer on every request,
                        when the orchestrator has client keys; never printed nor written to a report

A run uses min(threads, concurrency, requests) threads. It exits 1 when any request failed
(non-2xx answer or network error) unless --tolerate-errors, and 2 on bad options.
`;

const FLAGS = {
  url: { type: 'string' },
  requests: { type: 'string' },
  threads: { type: 'string' },
  concurrency: { type: 'string' },
  method: { type: 'string' },
  body: { type: 'string' },
  'timeout-ms': { type: 'string' },
  json: { type: 'string' },
  report: { type: 'string' },
  'tolerate-errors': { type: 'boolean' },
  'no-progress': { type: 'boolean' },
} as const;

runFlagsCli(HELP, FLAGS, async (flags) => {
  const options = validateOptions({
    url: flags.url,
    requests: flags.requests,
    threads: flags.threads,
    concurrency: flags.concurrency,
    method: flags.method,
    body: flags.body,
    timeoutMs: flags['timeout-ms'],
    json: flags.json,
    report: flags.report,
    tolerateErrors: flags['tolerate-errors'],
    noProgress: flags['no-progress'],
  });

  // From the environment, never a flag: a flag would show in `ps`.
  const key = process.env.ORCHESTRATOR_KEY || undefined;
  const progress = options.progress ? createProgressDisplay(options.requests, process.stderr) : undefined;
  const result = await runLoad({ ...options, key }, { onProgress: (p) => progress?.update(p) }).finally(() => progress?.stop());

  const json = `${JSON.stringify(result, null, 2)}\n`;
  if (options.json === '-') {
    // stdout carries only the JSON so it can be piped.
    process.stdout.write(json);
    process.stderr.write(formatResult(result));
  } else {
    process.stdout.write(formatResult(result));
    if (options.json !== null) await writeFile(options.json, json);
  }
  if (options.report !== null) {
    await writeFile(options.report, formatHtmlReport(result));
    process.stderr.write(`report written to ${options.report}\n`);
  }
  if (result.failed > 0 && !options.tolerateErrors) {
    throw new AppError('REQUESTS_FAILED', `${result.failed} of ${result.requests} requests failed (--tolerate-errors to exit 0 anyway)`);
  }
  return 0;
});

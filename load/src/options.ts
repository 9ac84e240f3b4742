import { z } from 'zod';
import { intFrom } from '../../common/src/config-loader.js';
import { UsageError } from '../../common/src/errors.js';
import { httpMethods, type HttpMethod } from './messages.js';

/** Where the load goes. @default 'http://127.0.0.1:8080/new_request' */
export const DEFAULT_URL = 'http://127.0.0.1:8080/new_request';
/** What each request sends. @default '{"text":"I love this product"}' */
export const DEFAULT_BODY = '{"text":"I love this product"}';
/** Most requests one run may send; every latency is kept (8 bytes each) for exact percentiles. */
export const MAX_REQUESTS = 10_000_000;
/** Most load threads one run may start. */
export const MAX_THREADS = 64;
/** Most requests in flight at once over all threads. */
export const MAX_CONCURRENCY = 10_000;

/** What `runLoad` needs. */
export interface LoadOptions {
  url: string;
  /** Requests to send in all. @default 100 */
  requests: number;
  /** Worker threads asked for; a run uses min(threads, concurrency, requests). @default 4 */
  threads: number;
  /** Requests in flight at once over all threads. @default threads */
  concurrency: number;
  method: HttpMethod;
  /** JSON body sent as application/json, or null for none (always null for GET and HEAD). @default DEFAULT_BODY */
  body: string | null;
  /** Deadline of one request, from sending to the end of the answer, in ms. @default 30000 */
  timeoutMs: number;
  /** Also measure each second of the run (throughput, latency percentiles, requests per container). @default false */
  timeline?: boolean;
  /** Client key sent as `Authorization: Bearer <key>` on every request; never part of the result. @default none */
  key?: string;
}

/** What the CLI needs on top. */
export interface CliOptions extends LoadOptions {
  /** File to write the result to as JSON, `-` for stdout, or null. @default null */
  json: string | null;
  /** File to write an HTML report with charts to, or null. @default null */
  report: string | null;
  /** Exit 0 even when requests failed. @default false */
  tolerateErrors: boolean;
  /** Show progress on stderr. @default true */
  progress: boolean;
}

/** Flag spelling of each option key, for error messages. */
const flagOf: Record<string, string> = {
  url: '--url',
  requests: '--requests',
  threads: '--threads',
  concurrency: '--concurrency',
  method: '--method',
  body: '--body',
  timeoutMs: '--timeout-ms',
  json: '--json',
  report: '--report',
  tolerateErrors: '--tolerate-errors',
  noProgress: '--no-progress',
};

const isJson = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

const isHttpUrl = (text: string): boolean => {
  try {
    return ['http:', 'https:'].includes(new URL(text).protocol);
  } catch {
    return false;
  }
};

const schema = z
  .object({
    url: z.string().refine(isHttpUrl, 'expected an http:// or https:// URL').default(DEFAULT_URL),
    requests: intFrom(1, MAX_REQUESTS).default(100),
    threads: intFrom(1, MAX_THREADS).default(4),
    concurrency: intFrom(1, MAX_CONCURRENCY).optional(),
    method: z
      .string()
      .transform((method) => method.toUpperCase())
      .pipe(z.enum(httpMethods, { error: `expected one of ${httpMethods.join(', ')}` }))
      .default('POST'),
    body: z.string().refine(isJson, 'expected a JSON document').optional(),
    timeoutMs: intFrom(1, 3_600_000).default(30_000),
    json: z.string().min(1, 'expected a file name or -').optional(),
    report: z.string().regex(/\.html?$/i, 'expected a file name ending in .html').optional(),
    tolerateErrors: z.boolean().default(false),
    noProgress: z.boolean().default(false),
  })
  .superRefine((value, ctx) => {
    if (value.body !== undefined && (value.method === 'GET' || value.method === 'HEAD')) {
      ctx.addIssue({ code: 'custom', path: ['body'], message: `expected no body with --method ${value.method}` });
    }
  });

/** Raw option values as flags give them (strings and switches) or as tests give them (numbers). */
export type RawOptions = Partial<Record<keyof z.input<typeof schema>, unknown>>;

/**
 * Validate and complete raw options into frozen CLI options. Throws a UsageError (exit 2) naming
 * the flag, what was expected and what was received.
 */
export function validateOptions(raw: RawOptions): Readonly<CliOptions> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const flag = flagOf[key] ?? key;
    const received = key in raw ? JSON.stringify((raw as Record<string, unknown>)[key]) : 'nothing';
    throw new UsageError(`${flag}: ${issue.message}; received ${received}`);
  }
  const value = result.data;
  const bodyless = value.method === 'GET' || value.method === 'HEAD';
  return Object.freeze({
    url: value.url,
    requests: value.requests,
    threads: value.threads,
    concurrency: value.concurrency ?? value.threads,
    method: value.method,
    body: bodyless ? null : (value.body ?? DEFAULT_BODY),
    timeoutMs: value.timeoutMs,
    json: value.json ?? null,
    report: value.report ?? null,
    timeline: value.report !== undefined,
    tolerateErrors: value.tolerateErrors,
    progress: !value.noProgress,
  });
}

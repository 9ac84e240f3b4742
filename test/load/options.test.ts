import { describe, expect, it } from 'vitest';
import { UsageError } from '../../common/src/errors.js';
import { DEFAULT_BODY, DEFAULT_URL, validateOptions, type RawOptions } from '../../load/src/options.js';

/** The UsageError `validateOptions` throws for `raw`. */
function usageError(raw: RawOptions): UsageError {
  try {
    validateOptions(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('validateOptions', () => {
  it('fills in the documented defaults, concurrency following threads', () => {
    expect(validateOptions({})).toEqual({
      url: DEFAULT_URL,
      requests: 100,
      threads: 4,
      concurrency: 4,
      method: 'POST',
      body: DEFAULT_BODY,
      timeoutMs: 30_000,
      json: null,
      report: null,
      timeline: false,
      tolerateErrors: false,
      progress: true,
    });
    expect(validateOptions({ threads: '8' }).concurrency).toBe(8);
  });

  it('takes flag strings and switches', () => {
    expect(
      validateOptions({ url: 'https://example.test/x?y=1', requests: '1000', threads: '2', concurrency: '64', method: 'patch', body: '[1]', timeoutMs: '500', json: '-', report: 'run.html', tolerateErrors: true, noProgress: true }),
    ).toEqual({ url: 'https://example.test/x?y=1', requests: 1000, threads: 2, concurrency: 64, method: 'PATCH', body: '[1]', timeoutMs: 500, json: '-', report: 'run.html', timeline: true, tolerateErrors: true, progress: false });
  });

  it('sends no body with GET and HEAD', () => {
    expect(validateOptions({ method: 'GET' }).body).toBeNull();
    expect(validateOptions({ method: 'head' }).body).toBeNull();
  });

  // The message starts with the flag: that is what tells a user which one to fix.
  it.each([
    ['--requests', { requests: '0' }],
    ['--requests', { requests: '1.5' }],
    ['--threads', { threads: 'abc' }],
    ['--threads', { threads: '65' }],
    ['--concurrency', { concurrency: '-1' }],
    ['--url', { url: 'not a url' }],
    ['--url', { url: 'ftp://127.0.0.1/x' }],
    ['--method', { method: 'FETCH' }],
    ['--body', { body: '{text: hi}' }],
    ['--body', { body: '{}', method: 'GET' }],
    ['--timeout-ms', { timeoutMs: '0' }],
  ] as const)('refuses %s in %j with a UsageError naming the flag and what it received', (flag, raw) => {
    const error = usageError(raw);
    expect(error.code).toBe('USAGE');
    expect(error.message.startsWith(`${flag}: `)).toBe(true);
    expect(error.message).toContain('received');
    expect(error.message).not.toContain('\n');
  });
});

/** Base of every error this project raises on purpose: a stable `code` for callers and tests. */
export class AppError extends Error {
  /** Stable machine-readable code, e.g. `QUEUE_FULL`. */
  readonly code: string;
  /** HTTP status when the error reaches a client. @default 500 */
  readonly status: number;
  /** Whether the message is safe to show to an HTTP client. @default false */
  readonly expose: boolean;
  /** Seconds the client should wait before sending again (the Retry-After of a 429 or 503), when the error knows. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, message: string, options: { status?: number; expose?: boolean; cause?: unknown; retryAfterSeconds?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options.status ?? 500;
    this.expose = options.expose ?? false;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** Invalid configuration: the message names the key, what was expected and what was found. */
export class ConfigError extends AppError {
  constructor(message: string) {
    super('CONFIG_INVALID', message, { status: 400, expose: true });
  }
}

/** Invalid command-line usage. */
export class UsageError extends AppError {
  constructor(message: string) {
    super('USAGE', message, { status: 400, expose: true });
  }
}

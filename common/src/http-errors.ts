import { AppError } from './errors.js';

/** The request body exceeds the limit: 413 `PAYLOAD_TOO_LARGE`. */
export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number, cause?: unknown) {
    super('PAYLOAD_TOO_LARGE', `request body exceeds ${limitBytes} bytes`, { status: 413, expose: true, cause });
  }
}

/** No route for this path: 404 `NOT_FOUND`. */
export class NotFoundError extends AppError {
  constructor(message: string) {
    super('NOT_FOUND', message, { status: 404, expose: true });
  }
}

/** The path exists but not for this method: 405 `METHOD_NOT_ALLOWED`. */
export class MethodNotAllowedError extends AppError {
  constructor(method: string, path: string) {
    super('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, { status: 405, expose: true });
  }
}

/** The body is of a type the route does not take: 415 `UNSUPPORTED_MEDIA_TYPE`. */
export class UnsupportedMediaTypeError extends AppError {
  constructor(expected: string) {
    super('UNSUPPORTED_MEDIA_TYPE', `the body must be ${expected} (Content-Type: ${expected})`, { status: 415, expose: true });
  }
}

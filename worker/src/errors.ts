export { MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from '../../common/src/http-errors.js';
import { AppError } from '../../common/src/errors.js';

/** The request body is not `{"text": <non-empty string>}` or not sent as JSON: 400 `INVALID_INPUT`. */
export class InvalidInputError extends AppError {
  constructor(message: string) {
    super('INVALID_INPUT', message, { status: 400, expose: true });
  }
}

/** The request body is not parseable JSON: 400 `INVALID_JSON`. */
export class InvalidJsonError extends AppError {
  constructor(message: string, cause?: unknown) {
    super('INVALID_JSON', message, { status: 400, expose: true, cause });
  }
}

/** The worker was crashed on purpose through the crash API; every request then fails: 500 `CRASHED`. */
export class CrashedError extends AppError {
  constructor() {
    super('CRASHED', 'worker crashed on request and no longer serves', { status: 500, expose: true });
  }
}

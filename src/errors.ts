// The catalogue of stable error codes (docs/errors.md mirrors it; a test keeps the two in step).

export const ERROR_CATALOGUE = {
  BAD_REQUEST: { status: 400, summary: 'The request is malformed or fails validation; fix it before retrying.' },
  MALFORMED_JSON: { status: 400, summary: 'The body is not valid JSON.' },
  INVALID_SIGNATURE: {
    status: 400,
    summary: 'A Stripe webhook whose Stripe-Signature is missing, wrong or too old; nothing was recorded.',
  },
  UNAUTHENTICATED: {
    status: 401,
    summary: 'No valid credentials: a pushed task without a valid OIDC token or X-Task-Secret, or no session.',
  },
  FORBIDDEN: { status: 403, summary: 'Authenticated, but not allowed (a wrong webhook signature, a non-admin).' },
  NOT_FOUND: { status: 404, summary: 'No such route or resource.' },
  UNKNOWN_TASK: { status: 404, summary: 'POST /tasks/{task} names a task that is not in the registry.' },
  METHOD_NOT_ALLOWED: { status: 405, summary: 'The route exists but not for this method.' },
  CONFLICT: { status: 409, summary: 'The resource is in a state that does not allow the request.' },
  TASK_BUSY: {
    status: 409,
    summary: 'Another delivery of the same task run holds a live lease; Cloud Tasks retries later.',
  },
  PAYLOAD_TOO_LARGE: { status: 413, summary: 'The body exceeds the size limit of the route.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'The Content-Type is not accepted by the route.' },
  RATE_LIMITED: { status: 429, summary: 'Too many requests; retry after the Retry-After header.' },
  INTERNAL: { status: 500, summary: 'An unexpected failure; details are in the logs, never in the response.' },
  TASK_FAILED: { status: 500, summary: 'The task handler failed with a retryable error; Cloud Tasks retries it.' },
  NOT_READY: { status: 503, summary: 'The service cannot serve yet (database down, migrations pending).' },
  DATABASE_UNAVAILABLE: {
    status: 503,
    summary: 'The database did not answer; the request changed nothing and can be retried.',
  },
  TASK_RETRY_LATER: { status: 503, summary: 'The task asked to be retried later; see Retry-After.' },
  OVERLOADED: {
    status: 503,
    summary: 'Load shed (event loop lagging or database pool saturated); nothing was done, retry after Retry-After.',
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error with a stable code whose message is safe to show to the caller. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; headers?: Record<string, string> } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.headers = options.headers ?? {};
  }
}

/** The database could not be reached or dropped the connection: a retry can succeed. */
export class DatabaseUnavailableError extends AppError {
  constructor(cause: unknown) {
    super('DATABASE_UNAVAILABLE', 'The database is unavailable; try again shortly.', { cause });
    this.name = 'DatabaseUnavailableError';
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}

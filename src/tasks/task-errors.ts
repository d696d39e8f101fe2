// What a handler throws to say how its task should be retried. Anything else is retryable.

/** The task cannot succeed however often it is retried (bad input, a refused recipient): record it dead. */
export class NonRetryableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/** Retry, but not before this many seconds (a rate limit, a dependency asking for patience). */
export class RetryAfterError extends Error {
  readonly retryAfterSeconds: number;
  constructor(
    retryAfterSeconds: number,
    message = `retry after ${retryAfterSeconds} s`,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RetryAfterError';
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterSeconds));
  }
}

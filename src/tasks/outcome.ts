// The one decision Cloud Tasks acts on: what an attempt's outcome becomes as an HTTP answer.
// 2xx removes the task from the queue; anything else is retried (429/503 also slow the queue).
import { DatabaseUnavailableError, type ErrorCode, errorBody } from '../errors.ts';
import { NonRetryableError, RetryAfterError } from './task-errors.ts';

export type TaskOutcome =
  | { kind: 'succeeded'; runId: number; attempt: number; result?: unknown }
  | { kind: 'duplicate'; runId: number; status: 'succeeded' | 'dead' }
  | { kind: 'busy'; runId: number; leaseExpiresAt: Date }
  | { kind: 'dead'; runId: number | undefined; error: string }
  | { kind: 'retry'; runId: number | undefined; error: string; retryAfterSeconds?: number; code: ErrorCode };

export interface TaskResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** Seconds a 503 for an unavailable database asks Cloud Tasks to wait. */
export const DATABASE_RETRY_AFTER_SECONDS = 10;

export function responseFor(outcome: TaskOutcome, now: Date): TaskResponse {
  switch (outcome.kind) {
    case 'succeeded':
      return {
        status: 200,
        headers: { 'x-task-outcome': 'succeeded' },
        body: { outcome: 'succeeded', runId: outcome.runId, attempt: outcome.attempt },
      };
    case 'duplicate':
      return {
        status: 200,
        headers: { 'x-task-outcome': 'duplicate' },
        body: { outcome: 'duplicate', runId: outcome.runId, status: outcome.status },
      };
    case 'busy': {
      const seconds = Math.max(1, Math.ceil((outcome.leaseExpiresAt.getTime() - now.getTime()) / 1000));
      return {
        status: 409,
        headers: { 'x-task-outcome': 'busy', 'retry-after': String(seconds) },
        body: errorBody('TASK_BUSY', `Run ${outcome.runId} is being executed by another delivery.`),
      };
    }
    case 'dead':
      // 2xx on purpose: a retry cannot help, so Cloud Tasks must stop; the run keeps the error.
      return {
        status: 200,
        headers: { 'x-task-outcome': 'dead' },
        body: { outcome: 'dead', runId: outcome.runId ?? null, error: outcome.error },
      };
    case 'retry': {
      const headers: Record<string, string> = { 'x-task-outcome': 'retry' };
      if (outcome.retryAfterSeconds !== undefined) {
        headers['retry-after'] = String(outcome.retryAfterSeconds);
        return { status: 503, headers, body: errorBody(outcome.code, outcome.error) };
      }
      return { status: 500, headers, body: errorBody(outcome.code, outcome.error) };
    }
  }
}

/** How a handler's error ends its attempt. `lastAttempt`: the queue will not deliver it again. */
export function classifyFailure(
  err: unknown,
  lastAttempt: boolean,
): { status: 'failed' | 'dead'; message: string; retryAfterSeconds?: number; code: ErrorCode } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof NonRetryableError) return { status: 'dead', message, code: 'TASK_FAILED' };
  if (lastAttempt) return { status: 'dead', message: `${message} (last allowed attempt)`, code: 'TASK_FAILED' };
  if (err instanceof RetryAfterError) {
    return { status: 'failed', message, retryAfterSeconds: err.retryAfterSeconds, code: 'TASK_RETRY_LATER' };
  }
  if (err instanceof DatabaseUnavailableError) {
    return { status: 'failed', message, retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS, code: 'DATABASE_UNAVAILABLE' };
  }
  return { status: 'failed', message, code: 'TASK_FAILED' };
}

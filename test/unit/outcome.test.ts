import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DatabaseUnavailableError, errorBody } from '../../src/errors.ts';
import { classifyFailure, DATABASE_RETRY_AFTER_SECONDS, responseFor } from '../../src/tasks/outcome.ts';
import { NonRetryableError, RetryAfterError } from '../../src/tasks/task-errors.ts';

const now = new Date('2026-03-01T12:00:00Z');

describe('what Cloud Tasks is answered (one row per outcome)', () => {
  const rows: Array<[string, Parameters<typeof responseFor>[0], number, string, string | undefined]> = [
    ['succeeded', { kind: 'succeeded', runId: 1, attempt: 1 }, 200, 'succeeded', undefined],
    ['duplicate', { kind: 'duplicate', runId: 1, status: 'succeeded' }, 200, 'duplicate', undefined],
    ['busy', { kind: 'busy', runId: 1, leaseExpiresAt: new Date(now.getTime() + 41_500) }, 409, 'busy', '42'],
    ['dead', { kind: 'dead', runId: 1, error: 'bad input' }, 200, 'dead', undefined],
    [
      'retry after',
      { kind: 'retry', runId: 1, error: 'x', retryAfterSeconds: 30, code: 'TASK_RETRY_LATER' },
      503,
      'retry',
      '30',
    ],
    ['retry', { kind: 'retry', runId: 1, error: 'x', code: 'TASK_FAILED' }, 500, 'retry', undefined],
  ];
  for (const [label, outcome, status, header, retryAfter] of rows) {
    test(`${label} → ${status}, X-Task-Outcome: ${header}`, () => {
      const r = responseFor(outcome, now);
      assert.equal(r.status, status);
      assert.equal(r.headers['x-task-outcome'], header);
      assert.equal(r.headers['retry-after'], retryAfter);
    });
  }
  test('a busy run whose lease has just expired still asks for at least one second', () => {
    assert.equal(responseFor({ kind: 'busy', runId: 1, leaseExpiresAt: now }, now).headers['retry-after'], '1');
  });
});

describe('how a handler error ends its attempt', () => {
  test('NonRetryableError is dead at once', () => {
    assert.equal(classifyFailure(new NonRetryableError('no'), false).status, 'dead');
  });
  test('RetryAfterError retries after its seconds (rounded up, at least 1)', () => {
    const c = classifyFailure(new RetryAfterError(2.2), false);
    assert.deepEqual([c.status, c.retryAfterSeconds, c.code], ['failed', 3, 'TASK_RETRY_LATER']);
  });
  test('an unavailable database retries after 10 s', () => {
    const c = classifyFailure(new DatabaseUnavailableError(new Error('ECONNREFUSED')), false);
    assert.deepEqual([c.status, c.retryAfterSeconds, c.code], ['failed', 10, 'DATABASE_UNAVAILABLE']);
  });
  test('anything else retries with a 500', () => {
    const c = classifyFailure(new TypeError('x is undefined'), false);
    assert.deepEqual([c.status, c.retryAfterSeconds, c.code], ['failed', undefined, 'TASK_FAILED']);
  });
  test('on the last allowed attempt every failure is dead', () => {
    for (const err of [new Error('x'), new RetryAfterError(5), 'a string']) {
      const c = classifyFailure(err, true);
      assert.equal(c.status, 'dead');
      assert.match(c.message, /last allowed attempt/);
    }
  });
});

describe('the whole answer, body included (what the log and the dashboard read)', () => {
  test('each outcome: status, headers and body', () => {
    assert.deepEqual(responseFor({ kind: 'succeeded', runId: 7, attempt: 2, result: { x: 1 } }, now), {
      status: 200,
      headers: { 'x-task-outcome': 'succeeded' },
      body: { outcome: 'succeeded', runId: 7, attempt: 2 },
    });
    assert.deepEqual(responseFor({ kind: 'duplicate', runId: 7, status: 'dead' }, now), {
      status: 200,
      headers: { 'x-task-outcome': 'duplicate' },
      body: { outcome: 'duplicate', runId: 7, status: 'dead' },
    });
    assert.deepEqual(responseFor({ kind: 'busy', runId: 7, leaseExpiresAt: new Date(now.getTime() + 1) }, now), {
      status: 409,
      headers: { 'x-task-outcome': 'busy', 'retry-after': '1' },
      body: errorBody('TASK_BUSY', 'Run 7 is being executed by another delivery.'),
    });
    // A lease already past still asks for one second, never zero or less.
    assert.equal(
      responseFor({ kind: 'busy', runId: 7, leaseExpiresAt: new Date(now.getTime() - 5000) }, now).headers[
        'retry-after'
      ],
      '1',
    );
    assert.equal(
      responseFor({ kind: 'busy', runId: 7, leaseExpiresAt: new Date(now.getTime() + 2001) }, now).headers[
        'retry-after'
      ],
      '3',
    );
    assert.deepEqual(responseFor({ kind: 'dead', runId: 7, error: 'bad input' }, now), {
      status: 200,
      headers: { 'x-task-outcome': 'dead' },
      body: { outcome: 'dead', runId: 7, error: 'bad input' },
    });
    assert.deepEqual(responseFor({ kind: 'dead', runId: undefined, error: 'unknown task' }, now).body, {
      outcome: 'dead',
      runId: null,
      error: 'unknown task',
    });
    assert.deepEqual(
      responseFor({ kind: 'retry', runId: 7, error: 'later', retryAfterSeconds: 0, code: 'TASK_RETRY_LATER' }, now),
      {
        status: 503,
        headers: { 'x-task-outcome': 'retry', 'retry-after': '0' },
        body: errorBody('TASK_RETRY_LATER', 'later'),
      },
    );
    assert.deepEqual(responseFor({ kind: 'retry', runId: 7, error: 'boom', code: 'TASK_FAILED' }, now), {
      status: 500,
      headers: { 'x-task-outcome': 'retry' },
      body: errorBody('TASK_FAILED', 'boom'),
    });
  });

  test('classifyFailure: the message, the code and the wait, for each kind of error', () => {
    assert.deepEqual(classifyFailure(new NonRetryableError('no'), false), {
      status: 'dead',
      message: 'no',
      code: 'TASK_FAILED',
    });
    assert.deepEqual(classifyFailure(new NonRetryableError('no'), true), {
      status: 'dead',
      message: 'no',
      code: 'TASK_FAILED',
    });
    assert.deepEqual(classifyFailure(new Error('x'), true), {
      status: 'dead',
      message: 'x (last allowed attempt)',
      code: 'TASK_FAILED',
    });
    assert.deepEqual(classifyFailure('a string', false), {
      status: 'failed',
      message: 'a string',
      code: 'TASK_FAILED',
    });
    const later = new RetryAfterError(4);
    assert.deepEqual(classifyFailure(later, false), {
      status: 'failed',
      message: later.message,
      retryAfterSeconds: 4,
      code: 'TASK_RETRY_LATER',
    });
    const down = new DatabaseUnavailableError(new Error('ECONNREFUSED'));
    assert.deepEqual(classifyFailure(down, false), {
      status: 'failed',
      message: down.message,
      retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
      code: 'DATABASE_UNAVAILABLE',
    });
    assert.equal(DATABASE_RETRY_AFTER_SECONDS, 10);
  });
});

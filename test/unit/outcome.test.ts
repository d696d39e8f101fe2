import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DatabaseUnavailableError } from '../../src/errors.ts';
import { classifyFailure, responseFor } from '../../src/tasks/outcome.ts';
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

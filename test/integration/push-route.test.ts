import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { z } from 'zod';
import type { Db } from '../../src/db/db.ts';
import { openPostgres } from '../../src/db/postgres.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { NonRetryableError, RetryAfterError } from '../../src/tasks/task-errors.ts';
import { taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { gate, push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// Test tasks: what they do is observable, so "ran exactly once" is counted, not assumed.
const calls: Record<string, number> = {};
let holdFirstAttempt: Promise<void> | undefined;
/** Gates by attempt number (RetryCount + 1), for the takeover test. */
const holdAttempt = new Map<number, Promise<void>>();
const count = (name: string) => {
  calls[name] = (calls[name] ?? 0) + 1;
};

const noop = defineTask({
  name: 'test.noop',
  queue: 'q',
  payload: z.object({ id: z.string(), hold: z.boolean().optional() }),
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 30,
  async handler(ctx) {
    count(`noop:${ctx.payload.id}`);
    if (ctx.payload.hold && ctx.attempt === 1 && holdFirstAttempt) await holdFirstAttempt;
    await holdAttempt.get(ctx.attempt);
    return { seen: ctx.payload.id };
  },
});

const transfer = defineTask({
  name: 'test.transfer',
  queue: 'q',
  payload: z.object({ id: z.string(), fail: z.boolean().optional() }),
  idempotencyKey: (p) => p.id,
  transactional: true,
  async handler(ctx) {
    count(`transfer:${ctx.payload.id}`);
    await ctx.db.query('INSERT INTO test_effects (key) VALUES ($1)', [ctx.payload.id]);
    if (ctx.payload.fail && ctx.attempt === 1) throw new Error('failed after writing');
    return { ok: true };
  },
});

const flaky = defineTask({
  name: 'test.flaky',
  queue: 'q',
  payload: z.object({ id: z.string(), mode: z.enum(['error', 'retry-after', 'non-retryable']) }),
  idempotencyKey: (p) => p.id,
  async handler(ctx) {
    count(`flaky:${ctx.payload.id}`);
    if (ctx.payload.mode === 'retry-after') throw new RetryAfterError(30, 'Graph API rate limit');
    if (ctx.payload.mode === 'non-retryable') throw new NonRetryableError('recipient is not on WhatsApp');
    throw new Error('upstream 502');
  },
});

let sawAbort: unknown;
const stuck = defineTask({
  name: 'test.stuck',
  queue: 'q',
  payload: z.object({ id: z.string() }),
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 15,
  async handler(ctx) {
    // A handler that only stops when told to: it must be told before Cloud Tasks gives up.
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    sawAbort = ctx.signal.reason;
    return {};
  },
});

const registry = createRegistry({
  tasks: [noop, transfer, flaky, stuck],
  queues: [{ name: 'q', retryConfig: { maxAttempts: 3 } }],
  schedules: [],
});

let t: TestApp;
before(async () => {
  t = await buildTestApp({ registry });
  await t.db.query('CREATE TABLE test_effects (key text NOT NULL)');
});
after(() => t.close());
beforeEach(() => {
  holdFirstAttempt = undefined;
});

const effects = async (key: string) =>
  (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM test_effects WHERE key = $1', [key])).rows[0]!.n;
const runCount = async () => (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_runs')).rows[0]!.n;

describe(`POST /tasks/{task} (${testDbKind})`, () => {
  test('a delivery runs the handler, records the run succeeded and answers 200 succeeded', async () => {
    const claimed = t.events.waitFor('run:claimed', (e) => e.key === 'a1');
    const r = await push(t.app, t.issuer, 'test.noop', { id: 'a1' });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'succeeded');
    assert.equal((await claimed).attempt, 1);
    const run = await taskRuns.findRun(t.db, 'test.noop', 'a1');
    assert.equal(run?.status, 'succeeded');
    assert.deepEqual(run?.result, { seen: 'a1' });
    assert.equal(run?.cloudTaskName, 'task-1');
    assert.equal(run?.queueName, 'q');
    assert.equal(run?.delivery['x-cloudtasks-taskretrycount'], '0');
    assert.equal(run?.attemptHistory.length, 1);
    assert.equal(run?.attemptHistory[0]?.status, 'succeeded');
  });

  test('a second delivery of a succeeded run answers 200 duplicate and does not run the handler', async () => {
    await push(t.app, t.issuer, 'test.noop', { id: 'd1' });
    const r = await push(t.app, t.issuer, 'test.noop', { id: 'd1' }, { retryCount: 1 });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'duplicate');
    assert.equal(calls['noop:d1'], 1);
  });

  test('50 concurrent deliveries of one plain task: one execution; the rest duplicate or busy', async () => {
    const hold = gate();
    holdFirstAttempt = hold.promise;
    let answered = 0;
    const deliveries = Array.from({ length: 50 }, () =>
      push(t.app, t.issuer, 'test.noop', { id: 'c50', hold: true }).then((r) => {
        // Once every other delivery has been answered, let the one that holds the run finish.
        if (++answered === 49) hold.open();
        return r;
      }),
    );
    const results = await Promise.all(deliveries);
    assert.equal(calls['noop:c50'], 1);
    const outcomes = results.map((r) => `${r.status} ${r.outcome}`);
    assert.equal(outcomes.filter((o) => o === '200 succeeded').length, 1);
    assert.ok(
      outcomes.every((o) => ['200 succeeded', '200 duplicate', '409 busy'].includes(o)),
      outcomes.join(', '),
    );
    assert.ok(outcomes.includes('409 busy'));
    assert.equal((await taskRuns.findRun(t.db, 'test.noop', 'c50'))?.attempts, 1);
  });

  test('50 concurrent deliveries of one transactional task: its writes happen exactly once', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, () => push(t.app, t.issuer, 'test.transfer', { id: 't50' })),
    );
    assert.equal(await effects('t50'), 1);
    assert.equal(calls['transfer:t50'], 1);
    const outcomes = results.map((r) => `${r.status} ${r.outcome}`);
    assert.equal(outcomes.filter((o) => o === '200 succeeded').length, 1);
    assert.ok(
      outcomes.every((o) => ['200 succeeded', '200 duplicate', '409 busy'].includes(o)),
      outcomes.join(),
    );
  });

  test('a transactional handler that fails leaves no writes behind and records the attempt failed', async () => {
    const r = await push(t.app, t.issuer, 'test.transfer', { id: 'tf', fail: true });
    assert.equal(r.status, 500);
    assert.equal(r.outcome, 'retry');
    assert.equal(await effects('tf'), 0);
    const run = await taskRuns.findRun(t.db, 'test.transfer', 'tf');
    assert.equal(run?.status, 'failed');
    assert.equal(run?.lastError, 'failed after writing');
    assert.equal(run?.attempts, 1);
    // The retry (the handler fails on attempt 1 only) claims attempt 2 and commits once.
    const retry = await push(t.app, t.issuer, 'test.transfer', { id: 'tf', fail: true }, { retryCount: 1 });
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(await effects('tf'), 1);
    const done = await taskRuns.findRun(t.db, 'test.transfer', 'tf');
    assert.equal(done?.attempts, 2);
    assert.deepEqual(
      done?.attemptHistory.map((a) => [a.attempt, a.status]),
      [
        [1, 'failed'],
        [2, 'succeeded'],
      ],
    );
  });

  test('a delivery whose instance died is taken over after its lease; the late completion is rejected', async () => {
    const zombieGate = gate();
    const takeoverGate = gate();
    holdAttempt.set(1, zombieGate.promise);
    holdAttempt.set(3, takeoverGate.promise);
    try {
      const zombie = push(t.app, t.issuer, 'test.noop', { id: 'z1' });
      const { runId } = await t.events.waitFor('run:claimed', (e) => e.key === 'z1');
      // While the lease is live, another delivery is told to come back later.
      const early = await push(t.app, t.issuer, 'test.noop', { id: 'z1' }, { retryCount: 1 });
      assert.equal(early.status, 409);
      assert.equal(early.outcome, 'busy');
      assert.match(String(early.response.headers['retry-after']), /^\d+$/);
      // The lease outlives the 30 s dispatch deadline by a minute.
      t.clock.advance(91_000);
      const takenOver = t.events.waitFor('run:claimed', (e) => e.key === 'z1' && e.attempt === 2);
      const takeover = push(t.app, t.issuer, 'test.noop', { id: 'z1' }, { retryCount: 2 });
      await takenOver;
      // The zombie finishes while the new attempt still runs: its completion must not count.
      const fenced = t.events.waitFor('run:fenced', (e) => e.key === 'z1');
      const fromLine = t.logs.lines.length;
      zombieGate.open();
      const late = await zombie;
      assert.equal(late.status, 409);
      assert.equal((await fenced).attempt, 1);
      // The late answer names the run, and the discarded outcome is logged with what was lost.
      assert.equal(late.body.error.message, `Run ${runId} is being executed by another delivery.`);
      const lost = t.logs.lines
        .slice(fromLine)
        .find((l) => l.message === 'attempt lost its lease to a newer delivery; its outcome was discarded');
      assert.ok(lost, 'the fenced completion was logged');
      assert.deepEqual([lost.severity, lost.task, lost.runId, lost.attempt], ['WARNING', 'test.noop', runId, 1]);
      const during = await taskRuns.findRun(t.db, 'test.noop', 'z1');
      assert.equal(during?.status, 'running');
      assert.equal(during?.attempts, 2);
      takeoverGate.open();
      const done = await takeover;
      assert.equal(done.status, 200);
      assert.equal(done.outcome, 'succeeded');
      const run = await taskRuns.findRun(t.db, 'test.noop', 'z1');
      assert.equal(run?.status, 'succeeded');
      assert.equal(run?.attempts, 2);
      assert.deepEqual(
        run?.attemptHistory.map((a) => [a.attempt, a.status]),
        [[2, 'succeeded']],
      );
    } finally {
      holdAttempt.clear();
    }
  });

  test('RetryAfterError(30) answers 503 with Retry-After: 30', async () => {
    const r = await push(t.app, t.issuer, 'test.flaky', { id: 'ra', mode: 'retry-after' });
    assert.equal(r.status, 503);
    assert.equal(r.outcome, 'retry');
    assert.equal(r.response.headers['retry-after'], '30');
    assert.equal(r.body.error.code, 'TASK_RETRY_LATER');
    assert.equal((await taskRuns.findRun(t.db, 'test.flaky', 'ra'))?.status, 'failed');
  });

  test('a NonRetryableError is recorded dead and answered 2xx so Cloud Tasks stops', async () => {
    const r = await push(t.app, t.issuer, 'test.flaky', { id: 'nr', mode: 'non-retryable' });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'dead');
    const run = await taskRuns.findRun(t.db, 'test.flaky', 'nr');
    assert.equal(run?.status, 'dead');
    assert.equal(run?.lastError, 'recipient is not on WhatsApp');
    const again = await push(t.app, t.issuer, 'test.flaky', { id: 'nr', mode: 'non-retryable' }, { retryCount: 1 });
    assert.equal(again.outcome, 'duplicate');
    assert.equal(calls['flaky:nr'], 1);
  });

  test('other errors answer 500 retry; the last allowed attempt is recorded dead', async () => {
    const first = await push(t.app, t.issuer, 'test.flaky', { id: 'last', mode: 'error' });
    assert.equal(first.status, 500);
    assert.equal(first.outcome, 'retry');
    assert.equal(first.body.error.code, 'TASK_FAILED');
    const second = await push(t.app, t.issuer, 'test.flaky', { id: 'last', mode: 'error' }, { retryCount: 1 });
    assert.equal(second.status, 500);
    // maxAttempts 3 on queue q: RetryCount 2 is the third and last attempt.
    const third = await push(t.app, t.issuer, 'test.flaky', { id: 'last', mode: 'error' }, { retryCount: 2 });
    assert.equal(third.status, 200);
    assert.equal(third.outcome, 'dead');
    const run = await taskRuns.findRun(t.db, 'test.flaky', 'last');
    assert.equal(run?.status, 'dead');
    assert.equal(run?.lastError, 'upstream 502 (last allowed attempt)');
    assert.deepEqual(
      run?.attemptHistory.map((a) => a.status),
      ['failed', 'failed', 'dead'],
    );
  });

  test('a handler still running at its deadline is aborted and the attempt fails (retry), before the dispatch deadline', async (ctx) => {
    ctx.mock.timers.enable({ apis: ['setTimeout'] });
    const claimed = t.events.waitFor('run:claimed', (e) => e.key === 'stuck-1');
    const pending = push(t.app, t.issuer, 'test.stuck', { id: 'stuck-1' });
    await claimed;
    // Dispatch deadline 15 s: the handler gets 12 s (10 s or 20 % less, whichever is smaller).
    ctx.mock.timers.tick(11_999);
    assert.equal(sawAbort, undefined);
    ctx.mock.timers.tick(1);
    const r = await pending;
    ctx.mock.timers.reset();
    assert.equal(r.status, 500);
    assert.equal(r.outcome, 'retry');
    assert.match(r.body.error.message, /handler deadline of 12000 ms exceeded/);
    assert.match(String(sawAbort), /handler deadline/);
    const run = await taskRuns.findRun(t.db, 'test.stuck', 'stuck-1');
    assert.equal(run?.status, 'failed');
  });

  test('an unknown task is 404 UNKNOWN_TASK and records nothing', async () => {
    const before = await runCount();
    const r = await push(t.app, t.issuer, 'test.nope', {});
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'UNKNOWN_TASK');
    assert.equal(await runCount(), before);
  });

  test('a body that is not JSON is recorded dead with the error, answered 2xx, handler not called', async () => {
    const dead = t.events.waitFor('run:dead', (e) => e.task === 'test.noop');
    const r = await push(t.app, t.issuer, 'test.noop', null, { rawBody: '{"id": "x",', taskName: 'bad-json-1' });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'dead');
    assert.match(r.body.error, /body is not JSON/);
    const run = await taskRuns.findRun(t.db, 'test.noop', 'bad-json-1');
    assert.equal(run?.status, 'dead');
    assert.match(run?.lastError ?? '', /body is not JSON/);
    assert.equal((await dead).runId, run?.id);
    assert.equal(calls['noop:x'], undefined);
  });

  test('a payload that fails the schema is recorded dead with the validation error, handler not called', async () => {
    const r = await push(t.app, t.issuer, 'test.noop', { id: 42 }, { taskName: 'bad-schema-1' });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'dead');
    const run = await taskRuns.findRun(t.db, 'test.noop', 'bad-schema-1');
    assert.match(run?.lastError ?? '', /payload does not match test\.noop: id: /);
    assert.deepEqual(run?.payload, { id: 42 });
    assert.equal(calls['noop:42'], undefined);
  });

  test('the same key with a different payload is refused as dead; the first run is untouched', async () => {
    await push(t.app, t.issuer, 'test.flaky', { id: 'k1', mode: 'error' });
    const r = await push(t.app, t.issuer, 'test.flaky', { id: 'k1', mode: 'non-retryable' }, { retryCount: 1 });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'dead');
    assert.match(r.body.error, /idempotency key "k1" was first used with a different payload/);
    assert.equal(calls['flaky:k1'], 1);
    assert.equal((await taskRuns.findRun(t.db, 'test.flaky', 'k1'))?.status, 'failed');
  });
});

describe(`database outage (${testDbKind})`, () => {
  // The service's Db switched to a PostgreSQL pool on a port nothing listens on: a real
  // connection failure from the real driver, then switched back.
  let db: TestDb;
  let down: Db;
  let broken = false;
  let outage: TestApp;
  before(async () => {
    db = await createTestDb();
    down = openPostgres({ url: 'postgres://nobody@127.0.0.1:1/none', connectionTimeoutMs: 1000 });
    const switching: TestDb = {
      ...db,
      query: (text, values) => (broken ? down : db).query(text, values),
      exec: (sql) => (broken ? down : db).exec(sql),
      transaction: (fn) => (broken ? down : db).transaction(fn),
      close: () => db.close(),
    };
    outage = await buildTestApp({ registry, db: switching });
  });
  after(async () => {
    await outage.close();
    await down.close();
  });

  test('pushes answer 503 with Retry-After while the database is down, and nothing is lost', async () => {
    broken = true;
    const during = await push(outage.app, outage.issuer, 'test.noop', { id: 'outage-1' });
    assert.equal(during.status, 503);
    assert.equal(during.outcome, 'retry');
    assert.equal(during.body.error.code, 'DATABASE_UNAVAILABLE');
    assert.equal(during.response.headers['retry-after'], '10');
    const transactional = await push(outage.app, outage.issuer, 'test.transfer', { id: 'outage-2' });
    assert.equal(transactional.status, 503);
    assert.equal(calls['noop:outage-1'], undefined);
    broken = false;
    const after = await push(outage.app, outage.issuer, 'test.noop', { id: 'outage-1' }, { retryCount: 1 });
    assert.equal(after.status, 200);
    assert.equal(after.outcome, 'succeeded');
    assert.equal(calls['noop:outage-1'], 1);
  });
});

// The push route's answers and what it tells the rest of the service about each delivery: the 401
// and 404 answers whole (status, X-Task-Outcome, body, the refusal logged with its reason), the
// events and log lines of a duplicate, a busy run, a payload conflict, a failed attempt and a dead
// one, the attempt number a handler sees (Cloud Tasks' RetryCount + 1, or the run's own count when
// the header is absent) and when it is told that this is its last attempt.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { loadConfig } from '../../src/config.ts';
import { createTelemetry } from '../../src/observability/telemetry.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { leaseMs } from '../../src/tasks/push-route.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { NonRetryableError } from '../../src/tasks/task-errors.ts';
import { freePort } from '../helpers/cli-process.ts';
import { gate, push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

/** What each handler call saw, by payload id. */
const seen: Record<string, Array<{ attempt: number; lastAttempt: boolean }>> = {};
const holds = new Map<string, Promise<void>>();
const record = (id: string, ctx: { attempt: number; lastAttempt: boolean }) => {
  seen[id] = [...(seen[id] ?? []), { attempt: ctx.attempt, lastAttempt: ctx.lastAttempt }];
};

const payload = z.object({ id: z.string(), mode: z.enum(['ok', 'error', 'dead']).optional() });
const handler = async (ctx: {
  payload: z.infer<typeof payload>;
  attempt: number;
  lastAttempt: boolean;
}): Promise<unknown> => {
  record(ctx.payload.id, ctx);
  await holds.get(ctx.payload.id);
  if (ctx.payload.mode === 'error') throw new Error(`boom ${ctx.payload.id}`);
  if (ctx.payload.mode === 'dead') throw new NonRetryableError(`gone ${ctx.payload.id}`);
  return { ok: true };
};
const limited = defineTask({
  name: 'answers.limited',
  queue: 'two-attempts',
  payload,
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 30,
  handler,
});
const unlimited = defineTask({
  name: 'answers.unlimited',
  queue: 'forever',
  payload,
  idempotencyKey: (p) => p.id,
  handler,
});
const scheduled = defineTask({
  name: 'answers.scheduled',
  queue: 'forever',
  payload,
  idempotencyKey: (p) => p.id,
  handler,
});

const registry = createRegistry({
  tasks: [limited, unlimited, scheduled],
  queues: [
    { name: 'two-attempts', retryConfig: { maxAttempts: 2 } },
    { name: 'forever', retryConfig: { maxAttempts: -1 } },
  ],
  schedules: [],
});

let t: TestApp;
before(async () => {
  t = await buildTestApp({ registry });
});
after(() => t.close());

const runCount = async () => (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_runs')).rows[0]!.n;
/** The warnings logged since line `from`. */
const warnings = (from: number) => t.logs.lines.slice(from).filter((l) => l.severity === 'WARNING');

describe(`push route answers (${testDbKind})`, () => {
  test('no credentials: 401, X-Task-Outcome retry, the refusal logged with its reason, nothing recorded', async () => {
    const runs = await runCount();
    for (const task of ['answers.limited', 'answers.nope']) {
      const from = t.logs.lines.length;
      const r = await push(t.app, t.issuer, task, { id: 'anon' }, { token: null });
      assert.equal(r.status, 401);
      assert.equal(r.outcome, 'retry');
      assert.deepEqual(r.body, {
        error: { code: 'UNAUTHENTICATED', message: 'The request does not carry valid task credentials.' },
      });
      const line = warnings(from).find(
        (l) => l.message === 'task push refused: credentials-missing (no Authorization: Bearer token)',
      );
      assert.ok(line, 'the refusal was logged');
      assert.equal(line.authFailure, 'credentials-missing');
      assert.equal(line.detail, 'no Authorization: Bearer token');
    }
    assert.equal(await runCount(), runs);
    assert.deepEqual(seen.anon, undefined);
  });

  test('an unknown task: 404 UNKNOWN_TASK naming it, X-Task-Outcome retry, nothing recorded', async () => {
    const runs = await runCount();
    const r = await push(t.app, t.issuer, 'answers.nope', { id: 'x' });
    assert.equal(r.status, 404);
    assert.equal(r.outcome, 'retry');
    assert.deepEqual(r.body, { error: { code: 'UNKNOWN_TASK', message: 'No task named "answers.nope".' } });
    assert.equal(await runCount(), runs);
  });

  test('a duplicate delivery: the run and its status in the body, and a run:duplicate event', async () => {
    const first = await push(t.app, t.issuer, 'answers.limited', { id: 'dup' });
    assert.equal(first.outcome, 'succeeded');
    const duplicate = t.events.waitFor('run:duplicate', (e) => e.key === 'dup');
    const again = await push(t.app, t.issuer, 'answers.limited', { id: 'dup' }, { retryCount: 1 });
    assert.deepEqual(again.body, { outcome: 'duplicate', runId: first.body.runId, status: 'succeeded' });
    assert.deepEqual(await duplicate, {
      task: 'answers.limited',
      key: 'dup',
      runId: first.body.runId,
      attempt: undefined,
    });
    assert.equal(seen.dup?.length, 1);
  });

  test('a busy run: 409 with the lease left as Retry-After, and a run:busy event', async () => {
    const hold = gate();
    holds.set('busy', hold.promise);
    const claimed = t.events.waitFor('run:claimed', (e) => e.key === 'busy');
    const holder = push(t.app, t.issuer, 'answers.limited', { id: 'busy' });
    const { runId } = await claimed;
    const busy = t.events.waitFor('run:busy', (e) => e.key === 'busy');
    const r = await push(t.app, t.issuer, 'answers.limited', { id: 'busy' }, { retryCount: 1 });
    assert.equal(r.status, 409);
    assert.equal(r.outcome, 'busy');
    // The clock has not moved: the whole lease is left.
    assert.equal(r.response.headers['retry-after'], String(Math.ceil(leaseMs(limited) / 1000)));
    assert.deepEqual(r.body, {
      error: { code: 'TASK_BUSY', message: `Run ${runId} is being executed by another delivery.` },
    });
    assert.deepEqual(await busy, { task: 'answers.limited', key: 'busy', runId, attempt: undefined });
    hold.open();
    assert.equal((await holder).outcome, 'succeeded');
  });

  test('a key reused with another payload: dead, naming the first run, logged and a run:dead event', async () => {
    const first = await push(t.app, t.issuer, 'answers.limited', { id: 'conf', mode: 'ok' });
    const dead = t.events.waitFor('run:dead', (e) => e.key === 'conf');
    const from = t.logs.lines.length;
    const r = await push(t.app, t.issuer, 'answers.limited', { id: 'conf', mode: 'error' }, { retryCount: 1 });
    const error = `idempotency key "conf" was first used with a different payload (run ${first.body.runId})`;
    assert.deepEqual(r.body, { outcome: 'dead', runId: first.body.runId, error });
    assert.deepEqual(await dead, {
      task: 'answers.limited',
      key: 'conf',
      runId: first.body.runId,
      attempt: undefined,
      error,
    });
    const line = warnings(from).find((l) => l.message === error);
    assert.ok(line, 'the conflict was logged');
    assert.deepEqual([line.task, line.runId, line.key], ['answers.limited', first.body.runId, 'conf']);
  });

  test('a failed attempt: run:failed with the error and attempt, logged; the last allowed one is dead', async () => {
    const failedEvent = t.events.waitFor('run:failed', (e) => e.key === 'fail');
    let from = t.logs.lines.length;
    const first = await push(t.app, t.issuer, 'answers.limited', { id: 'fail', mode: 'error' });
    assert.equal(first.status, 500);
    assert.deepEqual(first.body, { error: { code: 'TASK_FAILED', message: 'boom fail' } });
    const failed = await failedEvent;
    assert.deepEqual(failed, {
      task: 'answers.limited',
      key: 'fail',
      runId: failed.runId,
      attempt: 1,
      error: 'boom fail',
    });
    assert.ok(typeof failed.runId === 'number');
    let line = warnings(from).find((l) => l.message === 'task attempt failed: boom fail');
    assert.ok(line, 'the failed attempt was logged');
    assert.deepEqual([line.task, line.runId, line.attempt], ['answers.limited', failed.runId, 1]);

    // Queue two-attempts: RetryCount 1 is the second and last attempt.
    const deadEvent = t.events.waitFor('run:dead', (e) => e.key === 'fail');
    from = t.logs.lines.length;
    const last = await push(t.app, t.issuer, 'answers.limited', { id: 'fail', mode: 'error' }, { retryCount: 1 });
    const error = 'boom fail (last allowed attempt)';
    assert.deepEqual(last.body, { outcome: 'dead', runId: failed.runId, error });
    assert.deepEqual(await deadEvent, { task: 'answers.limited', key: 'fail', runId: failed.runId, attempt: 2, error });
    line = warnings(from).find((l) => l.message === `task dead: ${error}`);
    assert.ok(line, 'the dead attempt was logged');
    assert.deepEqual([line.task, line.runId, line.attempt], ['answers.limited', failed.runId, 2]);
    assert.deepEqual(seen.fail, [
      { attempt: 1, lastAttempt: false },
      { attempt: 2, lastAttempt: true },
    ]);
    // A NonRetryableError is dead on any attempt, with its own message.
    const gone = await push(t.app, t.issuer, 'answers.limited', { id: 'gone', mode: 'dead' });
    assert.deepEqual([gone.status, gone.outcome, gone.body.error], [200, 'dead', 'gone gone']);
  });

  test('the attempt a handler sees is RetryCount + 1; without the header, the run’s own attempt count', async () => {
    const r = await push(t.app, t.issuer, 'answers.unlimited', { id: 'count', mode: 'ok' }, { retryCount: 4 });
    assert.equal(r.outcome, 'succeeded');
    // The body's attempt is the run's: its first claim.
    assert.equal(r.body.attempt, 1);
    const noHeader = { 'x-cloudtasks-taskretrycount': '' };
    await push(t.app, t.issuer, 'answers.unlimited', { id: 'own', mode: 'error' }, { headers: noHeader });
    await push(t.app, t.issuer, 'answers.unlimited', { id: 'own', mode: 'error' }, { headers: noHeader });
    assert.deepEqual(seen.count, [{ attempt: 5, lastAttempt: false }]);
    assert.deepEqual(seen.own, [
      { attempt: 1, lastAttempt: false },
      { attempt: 2, lastAttempt: false },
    ]);
  });

  test('maxAttempts -1 never makes an attempt the last; a scheduled job without retries has one attempt', async () => {
    const r = await push(t.app, t.issuer, 'answers.unlimited', { id: 'forever', mode: 'error' }, { retryCount: 500 });
    assert.equal(r.status, 500);
    assert.equal(r.outcome, 'retry');
    assert.deepEqual(seen.forever, [{ attempt: 501, lastAttempt: false }]);
    const job = await push(
      t.app,
      t.issuer,
      'answers.scheduled',
      { id: 'job', mode: 'error' },
      { headers: { 'x-cloudscheduler': 'true' } },
    );
    assert.deepEqual([job.status, job.outcome, job.body.error], [200, 'dead', 'boom job (last allowed attempt)']);
    assert.deepEqual(seen.job, [{ attempt: 1, lastAttempt: true }]);
  });
});

describe(`push route metrics (${testDbKind})`, () => {
  test('a refused push is counted as unauthenticated under its task when registered, and under "(unknown)" otherwise', async (t) => {
    const port = await freePort();
    const config = loadConfig({ METRICS_EXPORTER: 'prometheus', METRICS_PORT: String(port) });
    const telemetry = await createTelemetry(config.observability, 'proj-1');
    const app = await buildTestApp({ registry, telemetry });
    t.after(async () => {
      await app.close();
      await telemetry.shutdown();
    });
    for (const task of ['answers.limited', 'answers.limited', 'answers.nope', 'no such task']) {
      const r = await push(app.app, app.issuer, task, { id: 'metric' }, { token: null });
      assert.equal(r.status, 401);
    }
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const runs = text.split('\n').filter((l) => l.startsWith('tasks_runs_total{'));
    const count = (task: string) =>
      runs
        .find((l) => l.includes(`task="${task}"`) && l.includes('outcome="unauthenticated"'))
        ?.split(' ')
        .pop();
    assert.equal(count('answers.limited'), '2', text);
    // A name the caller made up never becomes a label: a metric's labels must stay few.
    assert.equal(count('(unknown)'), '2', text);
    assert.ok(!text.includes('answers.nope') && !text.includes('no such task'), text);
  });
});

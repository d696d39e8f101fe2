import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Emulator, startEmulator } from '@backend/cloud-tasks-emulator';
import { z } from 'zod';
import type { CommandContext } from '../../src/cli/command-context.ts';
import { runCli } from '../../src/cli/main.ts';
import { auditEvents } from '../../src/domains/audit/audit.repository.ts';
import { type CloudClients, createCloudClients } from '../../src/tasks/cloud-clients.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { type EnqueueTarget, TaskEnqueuer, taskIdFor } from '../../src/tasks/enqueue.ts';
import { MAX_SEND_ATTEMPTS, OutboxRelay, sendRetryDelayMs } from '../../src/tasks/outbox-relay.ts';
import { syncQueues } from '../../src/tasks/queue-sync.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { type CapturedLogs, captureLogger } from '../helpers/capture-logger.ts';
import { runBackend } from '../helpers/cli-process.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { createTestDb, testDbKind } from '../helpers/test-db.ts';

// Poison outbox rows, against the real emulator over gRPC through the official client: a task
// whose queue does not exist yet (NOT_FOUND, as when a deploy adds a queue before `queues sync`)
// backs off and is parked after MAX_SEND_ATTEMPTS; a task Cloud Tasks refuses as malformed is
// parked at once; other rows keep flowing; an operator lists, re-sends and drops parked rows with
// the CLI. The relay's time is the test's clock: waits are crossed by moving it, never by sleeping.

const ok = defineTask({
  name: 'parking.ok_task',
  queue: 'parking-ok',
  payload: z.object({ n: z.number() }),
  handler: async () => ({}),
});
const late = defineTask({
  name: 'parking.late_task',
  queue: 'parking-late',
  payload: z.object({ n: z.number() }),
  handler: async () => ({}),
});
const registry = createRegistry({
  tasks: [ok, late],
  queues: [{ name: 'parking-ok' }, { name: 'parking-late' }],
  schedules: [],
});

interface OutboxState {
  id: number;
  task: string;
  send_attempts: number;
  last_error: string | null;
  next_attempt_at: Date | null;
  parked_at: Date | null;
}

describe(`outbox parking (${testDbKind})`, () => {
  let t: TestApp;
  let emulator: Emulator;
  let clients: CloudClients;
  let enqueuer: TaskEnqueuer;
  let relay: OutboxRelay;
  let logs: CapturedLogs;
  /** createTask calls per queue name, as the relay made them. */
  const calls = new Map<string, number>();
  let target: EnqueueTarget;

  const rowsOf = async (task?: string) =>
    (
      await t.db.query<OutboxState>(
        `SELECT id::int AS id, task, send_attempts, last_error, next_attempt_at, parked_at FROM task_outbox
          WHERE $1::text IS NULL OR task = $1 ORDER BY id`,
        [task ?? null],
      )
    ).rows;
  const enqueueInTx = (task: string, n: number) =>
    t.db.transaction((tx) => enqueuer.enqueueByName(task, { n }, { tx, key: `${task}-${n}` }));
  const taskExists = async (task: string, n: number, queue: string) => {
    const name = clients.tasks.taskPath('local', 'us-central1', queue, taskIdFor({ name: task }, `${task}-${n}`));
    try {
      await clients.tasks.getTask({ name });
      return true;
    } catch (err) {
      if ((err as { code?: number }).code === 5) return false;
      throw err;
    }
  };

  before(async () => {
    t = await buildTestApp();
    // Nothing is dispatched: the tasks only have to exist in their queue.
    emulator = await startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false });
    clients = createCloudClients({ emulator: emulator.grpcAddress, projectId: 'local' });
    target = {
      projectId: 'local',
      location: 'us-central1',
      publicBaseUrl: 'http://127.0.0.1:9',
      invokerServiceAccount: 'tasks-invoker@local.iam.gserviceaccount.com',
      audience: 'http://127.0.0.1:9',
      auth: 'oidc',
      secret: undefined,
    };
    // Only the first queue exists: parking-late's tasks are refused NOT_FOUND until it is synced.
    await syncQueues(clients.tasks, target, [{ name: 'parking-ok' }], { dryRun: false });
    const counted = {
      queuePath: clients.tasks.queuePath.bind(clients.tasks),
      taskPath: clients.tasks.taskPath.bind(clients.tasks),
      createTask: ((request: { parent: string }, ...rest: unknown[]) => {
        const queue = request.parent.split('/').pop()!;
        calls.set(queue, (calls.get(queue) ?? 0) + 1);
        return (clients.tasks.createTask as (...a: unknown[]) => unknown)(request, ...rest);
      }) as typeof clients.tasks.createTask,
    };
    logs = captureLogger('warn');
    enqueuer = new TaskEnqueuer({ client: counted, registry, target, clock: t.clock, log: logs.logger });
    relay = new OutboxRelay({ db: t.db, enqueuer, log: logs.logger, clock: t.clock });
  });
  after(async () => {
    await relay.stop();
    await clients.close();
    await emulator.close();
    await t.close();
  });

  test('a row that keeps failing backs off, is not retried before its time, and is parked after its attempts; other rows flow', async () => {
    await enqueueInTx('parking.late_task', 1);
    await enqueueInTx('parking.ok_task', 1);
    assert.deepEqual(await relay.flush(), { sent: 1, failed: 1, parked: 0 });
    assert.equal(await taskExists('parking.ok_task', 1, 'parking-ok'), true);

    let [poison] = await rowsOf('parking.late_task');
    assert.equal(poison!.send_attempts, 1);
    assert.match(poison!.last_error!, /NOT_FOUND/);
    assert.equal(poison!.next_attempt_at?.getTime(), t.clock.now() + 10_000);
    assert.equal(poison!.parked_at, null);

    for (let attempt = 2; attempt <= MAX_SEND_ATTEMPTS; attempt++) {
      const wait = sendRetryDelayMs(attempt - 1);
      const before = calls.get('parking-late');
      // Just before its time: the relay leaves it alone (no call), while a new row goes out.
      t.clock.advance(wait - 1);
      await enqueueInTx('parking.ok_task', attempt);
      assert.deepEqual(await relay.flush(), { sent: 1, failed: 0, parked: 0 }, `attempt ${attempt}: early`);
      assert.equal(calls.get('parking-late'), before);
      assert.equal((await rowsOf('parking.late_task'))[0]!.send_attempts, attempt - 1);
      // At its time: tried once more.
      t.clock.advance(1);
      const last = attempt === MAX_SEND_ATTEMPTS;
      assert.deepEqual(await relay.flush(), { sent: 0, failed: 1, parked: last ? 1 : 0 }, `attempt ${attempt}`);
      assert.equal(calls.get('parking-late'), before! + 1);
      [poison] = await rowsOf('parking.late_task');
      assert.equal(poison!.send_attempts, attempt);
      if (!last) assert.equal(poison!.next_attempt_at?.getTime(), t.clock.now() + sendRetryDelayMs(attempt));
    }
    // The waits doubled from 10 s and stopped growing at 10 minutes.
    assert.deepEqual(
      Array.from({ length: MAX_SEND_ATTEMPTS - 1 }, (_, i) => sendRetryDelayMs(i + 1) / 1000),
      [10, 20, 40, 80, 160, 320, 600, 600, 600],
    );
    assert.ok(poison!.parked_at, 'parked');
    assert.equal(poison!.parked_at!.getTime(), t.clock.now());
    assert.equal(poison!.next_attempt_at, null);
    assert.match(poison!.last_error!, /NOT_FOUND/);

    // One warn line for the parking, with the task and the error.
    const parkedLines = logs.find(/parked after/);
    assert.equal(parkedLines.length, 1);
    assert.equal(parkedLines[0]!.severity, 'WARNING');
    assert.equal(parkedLines[0]!.task, 'parking.late_task');
    assert.match(String(parkedLines[0]!.error), /NOT_FOUND/);
    assert.match(String(parkedLines[0]!.message), /parked after 10 failed sends: .*NOT_FOUND/);

    // Parked: never tried again, however long the relay runs; new rows still go out.
    const before = calls.get('parking-late');
    t.clock.advance(7 * 86_400_000);
    await enqueueInTx('parking.ok_task', 100);
    assert.deepEqual(await relay.flush(), { sent: 1, failed: 0, parked: 0 });
    assert.equal(calls.get('parking-late'), before);
    assert.equal(await taskExists('parking.ok_task', 100, 'parking-ok'), true);
    assert.deepEqual(
      (await rowsOf()).map((r) => r.task),
      ['parking.late_task'],
    );
  });

  test('a row sent twice is ALREADY_EXISTS, which counts as sent: the row goes, nothing is parked', async () => {
    await enqueueInTx('parking.ok_task', 1); // created in the first test already
    assert.deepEqual(await relay.flush(), { sent: 1, failed: 0, parked: 0 });
    assert.deepEqual((await rowsOf('parking.ok_task')).length, 0);
  });

  test('a task Cloud Tasks refuses as malformed (INVALID_ARGUMENT) is parked at its first failure', async () => {
    // A dispatch deadline Cloud Tasks refuses (the enqueuer never writes one; a row from an older
    // version or edited by hand might hold it).
    await t.db.query(
      `INSERT INTO task_outbox (task, queue, task_id, idempotency_key, payload, deadline_seconds, created_at)
       VALUES ('parking.ok_task', 'parking-ok', $1, 'bad-deadline', '{"n": 0}', 5, $2)`,
      [taskIdFor({ name: 'parking.ok_task' }, 'bad-deadline'), new Date(t.clock.now())],
    );
    assert.deepEqual(await relay.flush(), { sent: 0, failed: 1, parked: 1 });
    const [bad] = (await rowsOf('parking.ok_task'))!;
    assert.equal(bad!.send_attempts, 1);
    assert.ok(bad!.parked_at);
    assert.match(bad!.last_error!, /INVALID_ARGUMENT.*dispatchDeadline/);
    assert.equal(logs.find(/parked after 1 failed send: /).length, 1);
  });

  test('a failing row does not stop the pass: the rows behind it in the same and later batches go out', async () => {
    const small = new OutboxRelay({ db: t.db, enqueuer, log: logs.logger, clock: t.clock, batchSize: 2 });
    await t.db.transaction(async (tx) => {
      await enqueuer.enqueueByName('parking.late_task', { n: 2 }, { tx, key: 'parking.late_task-2' });
      for (const n of [201, 202, 203]) {
        await enqueuer.enqueueByName('parking.ok_task', { n }, { tx, key: `parking.ok_task-${n}` });
      }
    });
    assert.deepEqual(await small.flush(), { sent: 3, failed: 1, parked: 0 });
    for (const n of [201, 202, 203]) assert.equal(await taskExists('parking.ok_task', n, 'parking-ok'), true);
    // With the task backend down (every send of a batch fails) the pass stops at the first batch.
    const down = new OutboxRelay({
      db: t.db,
      enqueuer: new TaskEnqueuer({
        client: {
          queuePath: clients.tasks.queuePath.bind(clients.tasks),
          taskPath: clients.tasks.taskPath.bind(clients.tasks),
          createTask: (async () => {
            throw Object.assign(new Error('7 PERMISSION_DENIED: the caller may not create tasks'), { code: 7 });
          }) as unknown as typeof clients.tasks.createTask,
        },
        registry,
        target,
        clock: t.clock,
        log: logs.logger,
      }),
      log: logs.logger,
      clock: t.clock,
      batchSize: 1,
    });
    await t.db.transaction(async (tx) => {
      for (const n of [301, 302])
        await enqueuer.enqueueByName('parking.ok_task', { n }, { tx, key: `parking.ok_task-${n}` });
    });
    assert.deepEqual(await down.flush(), { sent: 0, failed: 1, parked: 0 });
    assert.deepEqual(
      await relay.flush(),
      { sent: 1, failed: 0, parked: 0 },
      'the untried row is due, the failed one waits',
    );
  });

  test('backend outbox list, resend and drop: output, refusals, and a parked row sent once the fault is fixed', async () => {
    const lines: string[] = [];
    const ctx = {
      registry,
      clock: t.clock,
      out: (s: string) => lines.push(s),
      db: async () => t.db,
      close: async () => {},
    } as unknown as CommandContext;
    const io = { out: (s: string) => lines.push(s), err: (s: string) => lines.push(`ERR ${s}`) };
    const run = async (...argv: string[]) => {
      lines.length = 0;
      const code = await runCli(argv, { context: () => ctx, io, delegate: false });
      return { code, out: lines.join('\n') };
    };
    const all = await rowsOf();
    const poison = all.find((r) => r.task === 'parking.late_task' && r.parked_at)!;
    const malformed = all.find((r) => r.task === 'parking.ok_task' && r.parked_at)!;
    const waiting = all.find((r) => !r.parked_at && r.task === 'parking.late_task')!;
    assert.ok(poison && malformed && waiting);

    // list: every row, parked ones marked, with attempts, error and age; --parked; --json.
    let r = await run('outbox', 'list');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^4 rows waiting, 2 parked\nID +TASK +QUEUE +STATE +ATTEMPTS +AGE +LAST ERROR$/m);
    assert.match(
      r.out,
      new RegExp(`^${poison.id} +parking\\.late_task +parking-late +parked +10 +7 d 0 h +5 NOT_FOUND`, 'm'),
    );
    assert.match(
      r.out,
      new RegExp(`^${malformed.id} +parking\\.ok_task +parking-ok +parked +1 .*INVALID_ARGUMENT`, 'm'),
    );
    assert.match(r.out, new RegExp(`^${waiting.id} +parking\\.late_task +parking-late +retry in 10 s +1 `, 'm'));
    assert.match(r.out, /backend outbox resend <id…>/);
    r = await run('outbox', 'list', '--parked');
    assert.equal(r.code, 0);
    assert.doesNotMatch(r.out, new RegExp(`^${waiting.id} `, 'm'));
    assert.match(r.out, new RegExp(`^${poison.id} `, 'm'));
    r = await run('outbox', 'list', '--parked', '--json');
    const json = r.out.split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(
      json.map((j) => [j.id, j.task, j.state, j.attempts]),
      [
        [poison.id, 'parking.late_task', 'parked', 10],
        [malformed.id, 'parking.ok_task', 'parked', 1],
      ],
    );
    assert.match(json[0].lastError, /NOT_FOUND/);
    assert.equal(json[0].ageMs > 7 * 86_400_000, true);

    // Refusals: bad usage is exit 2; an unknown id or a row not parked is exit 1 and changes nothing.
    assert.equal((await run('outbox', 'list', '--limit', '0')).code, 2);
    assert.equal((await run('outbox', 'resend')).code, 2);
    assert.equal((await run('outbox', 'resend', '--all', String(poison.id))).code, 2);
    r = await run('outbox', 'drop', 'abc');
    assert.deepEqual(r, { code: 2, out: 'ERR backend: outbox row ids are numbers (from outbox list), got "abc"' });
    r = await run('outbox', 'drop', String(malformed.id), '999999');
    assert.deepEqual(r, {
      code: 1,
      out: 'ERR backend: no outbox row 999999 (sent already, or never written): nothing was dropped',
    });
    r = await run('outbox', 'drop', String(malformed.id), String(waiting.id));
    assert.equal(r.code, 1);
    assert.equal(
      r.out,
      `ERR backend: outbox row ${waiting.id} is not parked (the relay still sends it); only parked rows can be dropped: nothing was dropped`,
    );
    r = await run('outbox', 'resend', '999999');
    assert.deepEqual(r, {
      code: 1,
      out: 'ERR backend: no outbox row 999999 (sent already, or never written): nothing was re-sent',
    });
    assert.equal((await rowsOf()).length, 4);

    // Re-sent before the cause is fixed: it fails again, from a fresh count (waits, not parked).
    r = await run('outbox', 'resend', String(poison.id));
    assert.equal(r.code, 0);
    assert.match(
      r.out,
      new RegExp(`^outbox row ${poison.id} \\(parking\\.late_task\\): un-parked, due now \\(attempts were 10\\)$`, 'm'),
    );
    let row = (await rowsOf()).find((x) => x.id === poison.id)!;
    assert.deepEqual([row.parked_at, row.send_attempts, row.next_attempt_at, row.last_error], [null, 0, null, null]);
    assert.deepEqual(await relay.flush(), { sent: 0, failed: 1, parked: 0 });
    row = (await rowsOf()).find((x) => x.id === poison.id)!;
    assert.equal(row.send_attempts, 1);
    assert.equal(row.parked_at, null);

    // The fault fixed (the queue synced): re-sent, it goes out on the next pass, with the waiting ones.
    await syncQueues(clients.tasks, target, [{ name: 'parking-late' }], { dryRun: false });
    r = await run('outbox', 'resend', String(poison.id));
    assert.equal(r.code, 0);
    assert.match(r.out, /was not parked, due now \(attempts were 1\)/);
    t.clock.advance(10_000);
    assert.deepEqual(await relay.flush(), { sent: 3, failed: 0, parked: 0 });
    assert.equal(await taskExists('parking.late_task', 1, 'parking-late'), true);
    assert.equal(await taskExists('parking.late_task', 2, 'parking-late'), true);

    // Dropped: gone, recorded in the audit trail; dropped again, it is unknown.
    r = await run('outbox', 'drop', String(malformed.id));
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      `outbox row ${malformed.id} (parking.ok_task, key bad-deadline) dropped: the task will not be sent`,
    );
    assert.deepEqual(await rowsOf(), []);
    const trail = await auditEvents.list(t.db, { limit: 10 });
    assert.deepEqual(
      trail.map((e) => [e.action, e.target]),
      [
        ['outbox.drop', String(malformed.id)],
        ['outbox.resend', String(poison.id)],
        ['outbox.resend', String(poison.id)],
      ],
    );
    assert.match(trail[0]!.actor, /^cli:/);
    assert.equal(trail[0]!.detail.key, 'bad-deadline');
    assert.match(String(trail[0]!.detail.lastError), /INVALID_ARGUMENT/);
    assert.equal((await run('outbox', 'drop', String(malformed.id))).code, 1);
    r = await run('outbox', 'list');
    assert.deepEqual(r, { code: 0, out: 'the outbox is empty: every task written in a transaction has been sent' });
    assert.deepEqual(await run('outbox', 'resend', '--all'), { code: 0, out: 'no parked rows to re-send' });
  });

  test('the dashboard marks parked rows apart and says what to do with them', async () => {
    await enqueueInTx('parking.ok_task', 400);
    await t.db.query(
      `UPDATE task_outbox SET send_attempts = 10, last_error = 'UNAVAILABLE: <down>', parked_at = $1 WHERE task = 'parking.ok_task'`,
      [new Date(t.clock.now())],
    );
    await enqueueInTx('parking.late_task', 401);
    const res = await t.app.inject({ method: 'GET', url: '/admin/outbox', headers: { host: 'localhost' } });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /2 rows waiting/);
    assert.match(res.body, /data-parked-count="1"/);
    const rows = [...res.body.matchAll(/<tr data-outbox-id="(\d+)"( data-parked="true")?>(.*?)<\/tr>/g)];
    assert.equal(rows.length, 2);
    assert.ok(rows[0]![2], 'the first row is parked');
    assert.match(rows[0]![3]!, /badge dead">parked<.*parked after 10 failed sends.*UNAVAILABLE: &lt;down&gt;/);
    assert.equal(rows[1]![2], undefined);
    assert.match(rows[1]![3]!, /just written/);
  });
});

// The real binary: the commands are registered, print one line on refusal and exit with the
// documented codes. On PostgreSQL only for the database part (a fresh PGlite data directory
// takes a migration per process); bad usage needs no database.
describe(`backend outbox, as a process (${testDbKind})`, () => {
  test('bad usage is exit 2 with one line, before any database is opened', {
    skip: testDbKind === 'postgres' && 'database-independent',
  }, async () => {
    const r = await runBackend(['outbox', 'resend', '7', 'x'], { DATA_DIR: '/nonexistent/backend-outbox' });
    assert.deepEqual(
      [r.code, r.stdout, r.stderr.trim()],
      [2, '', 'backend: outbox row ids are numbers (from outbox list), got "x"'],
    );
  });

  test('lists an empty outbox and refuses an unknown row with exit 1 and one line', {
    skip: testDbKind === 'pglite' && 'PostgreSQL only',
  }, async () => {
    const pg = await createTestDb();
    const env = { DATABASE_URL: pg.url! };
    try {
      const list = await runBackend(['outbox', 'list', '--parked'], env);
      assert.deepEqual([list.code, list.stdout.trim(), list.stderr], [0, 'no parked rows (0 waiting to be sent)', '']);
      const drop = await runBackend(['outbox', 'drop', '42'], env);
      assert.deepEqual(
        [drop.code, drop.stdout, drop.stderr.trim()],
        [1, '', 'backend: no outbox row 42 (sent already, or never written): nothing was dropped'],
      );
    } finally {
      await pg.close();
    }
  });
});

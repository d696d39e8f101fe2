import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PRUNE_BATCH_SQL } from '../../src/tasks/prune-runs.task.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

describe(`maintenance.prune_runs (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ env: { TASK_RUN_RETENTION_DAYS: '30' } });
  });
  after(() => t.close());

  test('deletes finished runs past the retention, keeps recent ones and every unfinished one', async () => {
    const now = t.clock.now();
    const day = 86_400_000;
    const seed: Array<[string, string, number]> = [
      ['old-succeeded', 'succeeded', 40],
      ['old-dead', 'dead', 31],
      ['old-failed', 'failed', 60],
      ['old-running', 'running', 45],
      ['recent-succeeded', 'succeeded', 29],
    ];
    for (const [key, status, ageDays] of seed) {
      const at = new Date(now - ageDays * day);
      const { rows } = await t.db.query<{ id: number }>(
        `INSERT INTO task_runs (task, idempotency_key, status, payload_hash, created_at, updated_at)
         VALUES ('health.check', $1, $2, 'h', $3, $3) RETURNING id`,
        [key, status, at],
      );
      // Two attempts each (a failure, then the outcome), which go with their run.
      for (const attempt of [1, 2]) {
        await t.db.query(
          `INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error)
           VALUES ($1, $2, 'health.check', $3, $4, $4, 0, $5)`,
          [rows[0]!.id, attempt, attempt === 1 ? 'failed' : status === 'running' ? 'failed' : status, at, key],
        );
      }
    }
    const r = await push(
      t.app,
      t.issuer,
      'maintenance.prune_runs',
      {},
      {
        headers: {
          'x-cloudscheduler': 'true',
          'x-cloudscheduler-jobname': 'backend-prune-runs',
          'x-cloudscheduler-scheduletime': new Date(now).toISOString(),
        },
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const { rows } = await t.db.query<{ idempotency_key: string }>(
      "SELECT idempotency_key FROM task_runs WHERE task = 'health.check' ORDER BY idempotency_key",
    );
    assert.deepEqual(
      rows.map((x) => x.idempotency_key),
      ['old-failed', 'old-running', 'recent-succeeded'],
    );
    const attempts = await t.db.query<{ error: string; n: number }>(
      "SELECT error, count(*)::int AS n FROM task_attempts WHERE task = 'health.check' GROUP BY error ORDER BY error",
    );
    assert.deepEqual(
      attempts.rows.map((x) => [x.error, x.n]),
      [
        ['old-failed', 2],
        ['old-running', 2],
        ['recent-succeeded', 2],
      ],
    );
  });
});

describe(`maintenance.prune_runs in bounded batches (${testDbKind})`, () => {
  const day = 86_400_000;
  let t: TestApp;
  let seq = 0;
  before(async () => {
    t = await buildTestApp({ env: { TASK_RUN_RETENTION_DAYS: '30' } });
  });
  after(() => t.close());

  async function seedOld(prefix: string, n: number, ageDays = 40): Promise<void> {
    await t.db.query(
      `INSERT INTO task_runs (task, idempotency_key, status, payload_hash, created_at, updated_at)
       SELECT 'health.check', $1 || i, 'succeeded', 'h', $2, $2 FROM generate_series(1, $3::int) AS i`,
      [prefix, new Date(t.clock.now() - ageDays * day), n],
    );
  }

  async function prune(payload: Record<string, unknown>) {
    seq += 1;
    const scheduled = new Date(t.clock.now() + seq * 1000).toISOString();
    const r = await push(t.app, t.issuer, 'maintenance.prune_runs', payload, {
      taskName: `prune-${seq}`,
      headers: {
        'x-cloudscheduler': 'true',
        'x-cloudscheduler-jobname': 'backend-prune-runs',
        'x-cloudscheduler-scheduletime': scheduled,
      },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const { rows } = await t.db.query<{ result: { deleted: number; batches: number; complete: boolean } }>(
      "SELECT result FROM task_runs WHERE task = 'maintenance.prune_runs' AND idempotency_key = $1",
      [scheduled],
    );
    assert.equal(rows.length, 1);
    return rows[0]!.result;
  }

  async function left(prefix: string): Promise<number> {
    const { rows } = await t.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM task_runs WHERE idempotency_key LIKE $1',
      [`${prefix}%`],
    );
    return rows[0]!.n;
  }

  test('deletes in statements of at most batchSize rows until nothing old is left', async () => {
    await seedOld('batch-', 25);
    const result = await prune({ batchSize: 10 });
    assert.deepEqual(result, { ...result, deleted: 25, batches: 3, complete: true });
    assert.equal(await left('batch-'), 0);
  });

  test('an exact multiple of the batch size ends with one empty batch', async () => {
    await seedOld('even-', 20);
    const result = await prune({ batchSize: 10 });
    assert.deepEqual(result, { ...result, deleted: 20, batches: 3, complete: true });
  });

  test('stops starting batches when the time budget is spent and leaves the rest for the next run', async () => {
    await seedOld('budget-', 30);
    const first = await prune({ batchSize: 10, budgetSeconds: 0 });
    assert.deepEqual(first, { ...first, deleted: 10, batches: 1, complete: false });
    assert.equal(await left('budget-'), 20);
    const second = await prune({ batchSize: 10 });
    assert.deepEqual(second, { ...second, deleted: 20, complete: true });
    assert.equal(await left('budget-'), 0);
  });

  test('a row another transaction holds is skipped, not waited for, and pushes go on while a batch is open', {
    skip: testDbKind === 'pglite' ? 'one connection: PGlite has no concurrent transactions' : false,
  }, async () => {
    await seedOld('held-', 1);
    await seedOld('free-', 15);
    const other = new pg.Client({ connectionString: t.db.url });
    await other.connect();
    try {
      // A late redelivery re-claiming an old run holds its row until it commits.
      await other.query('BEGIN');
      await other.query("SELECT id FROM task_runs WHERE idempotency_key = 'held-1' FOR UPDATE");
      const result = await prune({ batchSize: 10 });
      assert.deepEqual(result, { ...result, deleted: 15, batches: 2, complete: true });
      assert.equal(await left('held-'), 1);
      assert.equal(await left('free-'), 0);
      await other.query('ROLLBACK');

      // A batch in flight (its DELETE not yet committed) blocks no push: new runs claim and
      // finish, and a redelivery of a finished run is answered as a duplicate.
      await seedOld('inflight-', 10, 50); // older than held-1: the batch takes these first
      await other.query('BEGIN');
      const batch = await other.query(PRUNE_BATCH_SQL, [new Date(t.clock.now() - 30 * day), 10]);
      assert.equal(batch.rows[0]?.deleted, 10);
      const healthCheck = (i: number) =>
        push(
          t.app,
          t.issuer,
          'health.check',
          {},
          {
            taskName: `concurrent-${i}`,
            headers: {
              'x-cloudscheduler': 'true',
              'x-cloudscheduler-jobname': 'backend-health-check',
              'x-cloudscheduler-scheduletime': new Date(t.clock.now() + 100_000 + i * 1000).toISOString(),
            },
          },
        );
      const pushes = await Promise.all(Array.from({ length: 8 }, (_, i) => healthCheck(i)));
      assert.deepEqual(
        pushes.map((p) => [p.status, p.outcome]),
        Array(8).fill([200, 'succeeded']),
      );
      const again = await healthCheck(0);
      assert.equal(again.status, 200, JSON.stringify(again.body));
      // The batch's rows are still there for everyone else until it commits.
      assert.equal(await left('inflight-'), 10);
      await other.query('COMMIT');
      assert.equal(await left('inflight-'), 0);
    } finally {
      await other.end();
    }
  });
});

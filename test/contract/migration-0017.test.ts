import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { loadMigrations, migrate } from '../../src/db/migrate.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { createEmptyPostgresDb, testDbKind } from '../helpers/test-db.ts';

// Migration 0017 on a task_runs that already has runs: each attempt_history entry becomes a
// task_attempts row (the run's own times standing in for fields an entry lacks), failed and dead
// runs without an error get an empty one (the failures index holds them), and the run reads back
// with the same attempts as before.

async function emptyDb(): Promise<Db> {
  return testDbKind === 'postgres' ? await createEmptyPostgresDb() : await openPglite({ dataDir: null });
}

describe(`migration 0017 on existing runs (${testDbKind})`, () => {
  test('attempt histories move to task_attempts; failed and dead runs get an error; reads are unchanged', async () => {
    const db = await emptyDb();
    try {
      const all = loadMigrations();
      const upTo16 = all.filter((m) => m.id <= 16);
      await migrate(db, upTo16);
      const entry = (attempt: number, status: string, error: string | null, ms: number) => ({
        attempt,
        status,
        startedAt: `2026-01-01T00:00:0${attempt}.000Z`,
        finishedAt: `2026-01-01T00:00:0${attempt}.${String(ms).padStart(3, '0')}Z`,
        durationMs: ms,
        error,
        retryCount: attempt - 1,
      });
      const insert = async (key: string, status: string, lastError: string | null, history: unknown) =>
        (
          await db.query<{ id: number }>(
            `INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, last_error,
                                    attempt_history, created_at, started_at, finished_at, updated_at)
             VALUES ('health.check', $1, $2, 2, '{}', 'h', $3, $4, '2026-01-01T00:00:00Z', '2026-01-01T00:00:02Z',
                     '2026-01-01T00:00:02.250Z', '2026-01-01T00:00:02.250Z')
             RETURNING id`,
            [key, status, lastError, JSON.stringify(history)],
          )
        ).rows[0]!.id;
      const retried = await insert('retried', 'succeeded', null, [
        entry(1, 'failed', 'boom', 100),
        entry(2, 'succeeded', null, 250),
      ]);
      const dead = await insert('dead-no-error', 'dead', null, []);
      // An entry written by hand, without times: the run's own stand in.
      const sparse = await insert('sparse', 'succeeded', null, [{ attempt: 1, status: 'succeeded', durationMs: 7 }]);
      const running = await insert('running', 'running', null, []);

      const result = await migrate(db, all);
      assert.deepEqual(
        result.applied,
        all.filter((m) => m.id > 16).map((m) => m.name),
      );

      const run = await taskRuns.getRun(db, retried);
      assert.deepEqual(run?.attemptHistory, [entry(1, 'failed', 'boom', 100), entry(2, 'succeeded', null, 250)]);
      assert.deepEqual((await taskRuns.getRun(db, sparse))?.attemptHistory, [
        {
          attempt: 1,
          status: 'succeeded',
          startedAt: '2026-01-01T00:00:02.000Z',
          finishedAt: '2026-01-01T00:00:02.250Z',
          durationMs: 7,
          error: null,
          retryCount: null,
        },
      ]);
      assert.deepEqual((await taskRuns.getRun(db, running))?.attemptHistory, []);
      assert.equal((await taskRuns.getRun(db, dead))?.lastError, '');
      assert.deepEqual(
        (await taskRuns.listRuns(db, { status: 'dead' })).map((r) => r.id),
        [dead],
      );
      const column = await db.query(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'task_runs' AND column_name = 'attempt_history'",
      );
      assert.equal(column.rows.length, 0);
    } finally {
      await db.close();
    }
  });
});

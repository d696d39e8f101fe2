import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Queryable } from '../../src/db/db.ts';
import { type AttemptEntry, type ClaimInput, taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// Migration 0017: the push path's completion of a run that succeeds at its first attempt is a HOT
// update (no index entry written), counted by PostgreSQL's own statistics
// (pg_stat_user_tables.n_tup_hot_upd against n_tup_upd). The same workload with an index on
// updated_at (what 0002–0016 had) makes no update HOT: the check can fail.

const skip = testDbKind === 'pglite' ? 'PostgreSQL statistics: measured on PostgreSQL only' : false;

describe(`task_runs completions are HOT updates (${testDbKind})`, { skip }, () => {
  let db: TestDb;
  let client: pg.Client;
  let q: Queryable;
  let seq = 0;

  before(async () => {
    db = await createTestDb();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    q = {
      async query<R>(text: string, values?: readonly unknown[]) {
        const r = await client.query(text, values as unknown[]);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
      exec: async (sql) => {
        await client.query(sql);
      },
    };
  });
  after(async () => {
    await client?.end();
    await db?.close();
  });

  const now = new Date('2026-03-01T12:00:00.000Z');
  const claimInput = (key: string): ClaimInput => ({
    task: 'bench.noop',
    key,
    payload: { id: key },
    payloadHash: `h-${key}`,
    cloudTaskName: key,
    queueName: 'default',
    delivery: { 'x-cloudtasks-taskname': key },
    now,
    leaseMs: 60_000,
  });
  const entry = (attempt: number, status: AttemptEntry['status'], error: string | null = null): AttemptEntry => ({
    attempt,
    status,
    startedAt: now.toISOString(),
    finishedAt: new Date(now.getTime() + 5).toISOString(),
    durationMs: 5,
    error,
    retryCount: attempt - 1,
  });

  /** task_runs' update counters, flushed from this connection's backend first. */
  async function counters(): Promise<{ upd: number; hot: number }> {
    await client.query('SELECT pg_stat_force_next_flush()'); // flushed when this backend next goes idle
    await client.query('SELECT 1');
    const { rows } = await client.query<{ upd: string; hot: string }>(
      "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'task_runs'",
    );
    return { upd: Number(rows[0]!.upd), hot: Number(rows[0]!.hot) };
  }

  /** n runs claimed one by one, then completed: half alone, half in one batched statement. */
  async function claimAndSucceed(n: number): Promise<void> {
    const claimed: Array<{ runId: number; attempt: number }> = [];
    for (let i = 0; i < n; i++) {
      const c = await taskRuns.claimRun(q, claimInput(`hot-${seq++}`));
      assert.equal(c.kind, 'claimed');
      if (c.kind === 'claimed') claimed.push(c);
    }
    const half = Math.floor(n / 2);
    for (const c of claimed.slice(0, half)) {
      assert.equal(
        await taskRuns.finishAttempt(q, { ...c, status: 'succeeded', entry: entry(c.attempt, 'succeeded') }),
        true,
      );
    }
    const batch = claimed.slice(half);
    assert.deepEqual(
      await taskRuns.finishAttempts(
        q,
        batch.map((c) => ({ ...c, status: 'succeeded' as const, entry: entry(c.attempt, 'succeeded') })),
      ),
      batch.map(() => true),
    );
  }

  test('claim then success: nearly every completion is HOT; with updated_at indexed, none is', async (t) => {
    const before0 = await counters();
    await claimAndSucceed(200);
    const after0 = await counters();
    const upd = after0.upd - before0.upd;
    const hot = after0.hot - before0.hot;
    assert.equal(upd, 200, 'one update per run: its completion');
    t.diagnostic(`HOT updates: ${hot} of ${upd}`);
    assert.ok(hot >= 190, `HOT updates: ${hot} of ${upd}`);

    // The index every list used before 0017: each completion changes updated_at, so none is HOT.
    await client.query('CREATE INDEX hot_probe_updated_at ON task_runs (updated_at)');
    try {
      const before1 = await counters();
      await claimAndSucceed(100);
      const after1 = await counters();
      assert.equal(after1.upd - before1.upd, 100);
      assert.equal(after1.hot - before1.hot, 0);
    } finally {
      await client.query('DROP INDEX hot_probe_updated_at');
    }
  });

  test('a failure, its retry and its success are recorded as attempts; the failure is not HOT, by design', async () => {
    const c1 = await taskRuns.claimRun(q, claimInput('retried'));
    assert.equal(c1.kind, 'claimed');
    if (c1.kind !== 'claimed') return;
    await taskRuns.finishAttempt(q, { ...c1, status: 'failed', entry: entry(1, 'failed', 'boom') });
    const c2 = await taskRuns.claimRun(q, claimInput('retried'));
    assert.equal(c2.kind, 'claimed');
    if (c2.kind !== 'claimed') return;
    assert.equal(c2.attempt, 2);
    await taskRuns.finishAttempt(q, { ...c2, status: 'succeeded', entry: entry(2, 'succeeded') });
    const run = await taskRuns.getRun(q, c2.runId);
    assert.equal(run?.status, 'succeeded');
    assert.equal(run?.lastError, null);
    assert.deepEqual(
      run?.attemptHistory.map((a) => [a.attempt, a.status, a.error, a.retryCount, a.durationMs]),
      [
        [1, 'failed', 'boom', 0, 5],
        [2, 'succeeded', null, 1, 5],
      ],
    );
    assert.equal(run?.attemptHistory[0]?.startedAt, now.toISOString());
    assert.equal(run?.attemptHistory[1]?.finishedAt, new Date(now.getTime() + 5).toISOString());
  });
});

// The task_runs repository called directly, on a bare database: what each claim, completion and
// record statement answers and writes, row by row. The push route reaches these through its
// batcher, which falls back to one-at-a-time statements when a batch fails, so an answer of the
// batched calls that came out wrong would often be put right by the fallback and go unseen in the
// route's tests; here every result is checked as returned. A recording handle shows the statements
// and their parameters (the order rows are locked in), and can make one statement fail, or delete a
// row between two statements, as a concurrent transaction or a dropped connection would.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Queryable } from '../../src/db/db.ts';
import { payloadHash } from '../../src/tasks/push-route.ts';
import { type AttemptEntry, type ClaimInput, taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

const T0 = new Date('2026-03-01T12:00:00.000Z');
const LEASE_MS = 90_000;

let db: TestDb;
before(async () => {
  db = await createTestDb();
});
after(() => db.close());
beforeEach(async () => {
  await db.exec('DELETE FROM task_attempts; DELETE FROM task_runs;');
});

function input(key: string, over: Partial<ClaimInput> = {}): ClaimInput {
  const payload = over.payload ?? { id: key };
  return {
    task: 'repo.task',
    key,
    payload,
    payloadHash: payloadHash(payload),
    cloudTaskName: `projects/p/locations/l/queues/q/tasks/${key}`,
    queueName: 'q',
    delivery: { retryCount: 0 },
    now: T0,
    leaseMs: LEASE_MS,
    ...over,
  };
}

function entry(attempt: number, status: AttemptEntry['status'], error: string | null = null): AttemptEntry {
  return {
    attempt,
    status,
    startedAt: T0.toISOString(),
    finishedAt: new Date(T0.getTime() + 25).toISOString(),
    durationMs: 25,
    error,
    retryCount: attempt - 1,
  };
}

interface Recorder extends Queryable {
  statements: Array<{ text: string; values: readonly unknown[] }>;
}

/** The database, with each statement recorded; `before` may throw for one, or act before it runs. */
function recording(before?: (text: string, values: readonly unknown[]) => Promise<void> | void): Recorder {
  const statements: Recorder['statements'] = [];
  return {
    statements,
    async query(text, values = []) {
      statements.push({ text, values });
      await before?.(text, values);
      return db.query(text, values);
    },
    exec: (script) => db.exec(script),
  };
}

const isWhyMany = (text: string) => text.includes('unnest($1::text[], $2::text[])');
const isWhyOne = (text: string) => text.includes('WHERE task = $1 AND idempotency_key = $2');

/** Runs for the keys: one new, one succeeded, one dead, one running on a live lease, one on an expired
 * lease, one failed, and one whose key was first used with another payload. */
async function mixedRuns(): Promise<Record<string, number>> {
  const ids: Record<string, number> = {};
  for (const key of ['succeeded', 'dead', 'live', 'expired', 'failed', 'conflict']) {
    const earlier = key === 'expired' ? new Date(T0.getTime() - LEASE_MS - 1) : T0;
    const claimed = await taskRuns.claimRun(db, input(key, { now: earlier }));
    assert.equal(claimed.kind, 'claimed');
    ids[key] = (claimed as { runId: number }).runId;
  }
  for (const [key, status] of [
    ['succeeded', 'succeeded'],
    ['dead', 'dead'],
    ['failed', 'failed'],
  ] as const) {
    const finished = await taskRuns.finishAttempt(db, {
      runId: ids[key]!,
      attempt: 1,
      status,
      entry: entry(1, status, status === 'succeeded' ? null : 'boom'),
    });
    assert.equal(finished, true);
  }
  return ids;
}

const later = new Date(T0.getTime() + 1_000);
const mixedInputs = () => [
  input('new', { now: later }),
  input('succeeded', { now: later }),
  input('dead', { now: later }),
  input('live', { now: later }),
  input('expired', { now: later }),
  input('failed', { now: later }),
  input('conflict', { now: later, payload: { id: 'conflict', other: true } }),
];

describe(`task_runs repository (${testDbKind})`, () => {
  test('claimRuns answers each delivery of a batch as claimRun would, in the order given', async () => {
    const ids = await mixedRuns();
    const q = recording();
    const results = await taskRuns.claimRuns(q, mixedInputs());
    const values = results.map((r) => {
      assert.ok(r.ok);
      return r.value;
    });
    const fresh = values[0] as { kind: string; runId: number; attempt: number };
    assert.deepEqual(values, [
      { kind: 'claimed', runId: fresh.runId, attempt: 1 },
      { kind: 'duplicate', runId: ids.succeeded, status: 'succeeded' },
      { kind: 'duplicate', runId: ids.dead, status: 'dead' },
      { kind: 'busy', runId: ids.live, leaseExpiresAt: new Date(T0.getTime() + LEASE_MS) },
      { kind: 'claimed', runId: ids.expired, attempt: 2 },
      { kind: 'claimed', runId: ids.failed, attempt: 2 },
      { kind: 'conflict', runId: ids.conflict },
    ]);
    assert.ok(!Object.values(ids).includes(fresh.runId));
    // One claim statement and one asking why for the four it did not claim.
    assert.equal(q.statements.length, 2);
    assert.ok(isWhyMany(q.statements[1]!.text));
    assert.deepEqual(q.statements[1]!.values[1], ['conflict', 'dead', 'live', 'succeeded']);
    // What the claim wrote: the delivery's names, its lease and its attempt counter.
    const run = await taskRuns.getRun(db, fresh.runId);
    assert.deepEqual(
      [run?.status, run?.attempts, run?.cloudTaskName, run?.queueName, run?.delivery, run?.leaseExpiresAt],
      [
        'running',
        1,
        'projects/p/locations/l/queues/q/tasks/new',
        'q',
        { retryCount: 0 },
        new Date(later.getTime() + LEASE_MS),
      ],
    );
  });

  test('claimRuns sends its rows sorted by task and key, so batches in flight lock shared rows in one order', async () => {
    const q = recording();
    const keys = ['m', 'b', 'z', 'a', 'k'];
    const inputs = [...keys.map((k) => input(k)), input('a', { task: 'repo.other' }), input('a', { task: 'repo.aaa' })];
    const results = await taskRuns.claimRuns(q, inputs);
    assert.deepEqual(
      results.map((r) => r.ok && r.value.kind),
      inputs.map(() => 'claimed'),
    );
    const [tasks, sentKeys] = q.statements[0]!.values as [string[], string[]];
    assert.deepEqual(
      tasks.map((t, i) => `${t}/${sentKeys[i]}`),
      ['repo.aaa/a', 'repo.other/a', 'repo.task/a', 'repo.task/b', 'repo.task/k', 'repo.task/m', 'repo.task/z'],
    );
    // Every delivery claimed: no second statement asks why.
    assert.equal(q.statements.length, 1);
    // Each result is the one for its own input, whatever the sorting did.
    for (const [i, r] of results.entries()) {
      assert.ok(r.ok && r.value.kind === 'claimed');
      const run = await taskRuns.getRun(db, r.value.runId);
      assert.deepEqual([run?.task, run?.idempotencyKey], [inputs[i]!.task, inputs[i]!.key]);
    }
  });

  test('when the batched why fails, each unclaimed delivery is asked again on its own; one that fails again fails alone', async () => {
    const ids = await mixedRuns();
    const q = recording((text, values) => {
      if (isWhyMany(text)) throw new Error('connection reset while asking why');
      if (isWhyOne(text) && values[1] === 'dead') throw new Error('connection reset for dead');
    });
    const results = await taskRuns.claimRuns(q, mixedInputs());
    assert.deepEqual(results[1], { ok: true, value: { kind: 'duplicate', runId: ids.succeeded, status: 'succeeded' } });
    assert.equal(results[2]!.ok, false);
    assert.match(String((results[2] as { error: unknown }).error), /connection reset for dead/);
    assert.deepEqual(results[3], {
      ok: true,
      value: { kind: 'busy', runId: ids.live, leaseExpiresAt: new Date(T0.getTime() + LEASE_MS) },
    });
    assert.deepEqual(results[6], { ok: true, value: { kind: 'conflict', runId: ids.conflict } });
    for (const i of [0, 4, 5]) assert.ok(results[i]!.ok && results[i]!.value.kind === 'claimed');
    // The claim, the failed batched why, then one why per unclaimed delivery.
    assert.deepEqual(
      q.statements.slice(2).map((s) => s.values),
      [
        ['repo.task', 'conflict'],
        ['repo.task', 'dead'],
        ['repo.task', 'live'],
        ['repo.task', 'succeeded'],
      ],
    );
  });

  test('a run that vanished between the claim and the why fails that delivery alone, naming it', async () => {
    await mixedRuns();
    let deleted = false;
    const q = recording(async (text) => {
      if (isWhyMany(text) && !deleted) {
        deleted = true;
        await db.query("DELETE FROM task_runs WHERE idempotency_key = 'live'");
      }
    });
    const results = await taskRuns.claimRuns(q, mixedInputs());
    assert.equal(results[3]!.ok, false);
    assert.equal(
      ((results[3] as { error: unknown }).error as Error).message,
      'task run repo.task/live vanished while being claimed',
    );
    assert.deepEqual(
      results.filter((r) => r.ok).map((r) => r.ok && r.value.kind),
      ['claimed', 'duplicate', 'duplicate', 'claimed', 'claimed', 'conflict'],
    );
    // claimRun alone says the same.
    let again = false;
    const one = recording(async (text) => {
      if (isWhyOne(text) && !again) {
        again = true;
        await db.query("DELETE FROM task_runs WHERE idempotency_key = 'conflict'");
      }
    });
    await assert.rejects(taskRuns.claimRun(one, mixedInputs()[6]!), {
      message: 'task run repo.task/conflict vanished while being claimed',
    });
  });

  test('a busy run without a lease time is busy until now', async () => {
    const claimed = await taskRuns.claimRun(db, input('nolease'));
    assert.ok(claimed.kind === 'claimed');
    // A failed run reclaimed by another delivery a moment ago looks like this: running, its lease being set.
    await db.query('UPDATE task_runs SET lease_expires_at = NULL WHERE id = $1', [claimed.runId]);
    assert.deepEqual(await taskRuns.claimRun(db, input('nolease', { now: later })), {
      kind: 'busy',
      runId: claimed.runId,
      leaseExpiresAt: later,
    });
  });

  test('finishAttempts sends its rows sorted by run, answers in the order given, and fences each by its attempt', async () => {
    const claimed = [];
    for (const key of ['f1', 'f2', 'f3', 'f4']) claimed.push(await taskRuns.claimRun(db, input(key)));
    const runIds = claimed.map((c) => (c.kind === 'claimed' ? c.runId : -1));
    // f3's run was taken over by a second delivery: its first attempt no longer holds it.
    const takeover = await taskRuns.claimRun(db, input('f3', { now: new Date(T0.getTime() + LEASE_MS) }));
    assert.equal(takeover.kind, 'claimed');
    const q = recording();
    const order = [3, 0, 2, 1];
    const done = await taskRuns.finishAttempts(
      q,
      order.map((i) => ({
        runId: runIds[i]!,
        attempt: 1,
        status: i === 1 ? ('failed' as const) : ('succeeded' as const),
        result: { n: i },
        entry: entry(1, i === 1 ? 'failed' : 'succeeded', i === 1 ? 'upstream 502' : null),
      })),
    );
    assert.deepEqual(done, [true, true, false, true]);
    assert.deepEqual(
      q.statements[0]!.values[0],
      [...runIds].sort((a, b) => a - b),
    );
    const f2 = await taskRuns.getRun(db, runIds[1]!);
    assert.deepEqual(
      [f2?.status, f2?.lastError, f2?.attemptHistory.map((a) => a.error)],
      ['failed', 'upstream 502', ['upstream 502']],
    );
    const f4 = await taskRuns.getRun(db, runIds[3]!);
    assert.deepEqual([f4?.status, f4?.result, f4?.attemptHistory.length], ['succeeded', { n: 3 }, 1]);
    const f3 = await taskRuns.getRun(db, runIds[2]!);
    assert.deepEqual([f3?.status, f3?.attempts, f3?.attemptHistory.length], ['running', 2, 0]);
  });

  test('recordFailedAttempt answers the run and attempt it wrote, and nothing when another delivery holds the run', async () => {
    const first = await taskRuns.recordFailedAttempt(db, {
      ...input('tx'),
      status: 'failed',
      entry: entry(1, 'failed', 'rolled back'),
    });
    assert.ok(first);
    assert.equal(first.attempt, 1);
    const run = await taskRuns.getRun(db, first.runId);
    assert.deepEqual([run?.idempotencyKey, run?.status, run?.lastError], ['tx', 'failed', 'rolled back']);
    const second = await taskRuns.recordFailedAttempt(db, {
      ...input('tx', { now: later }),
      status: 'dead',
      entry: entry(2, 'dead', 'gone'),
    });
    assert.deepEqual(second, { runId: first.runId, attempt: 2 });
    // A live claim holds the key: the failure of a delivery that lost it is not written.
    const live = await taskRuns.claimRun(db, input('tx-live'));
    assert.equal(live.kind, 'claimed');
    assert.equal(
      await taskRuns.recordFailedAttempt(db, { ...input('tx-live'), status: 'failed', entry: entry(1, 'failed', 'x') }),
      undefined,
    );
  });

  test('recordRefused records a dead run once; a key that already has a run is left alone and answers nothing', async () => {
    const id = await taskRuns.recordRefused(db, { ...input('bad'), error: 'payload: expected string' });
    assert.ok(typeof id === 'number');
    const run = await taskRuns.getRun(db, id);
    assert.deepEqual([run?.status, run?.attempts, run?.lastError], ['dead', 0, 'payload: expected string']);
    assert.equal(await taskRuns.recordRefused(db, { ...input('bad'), error: 'again' }), undefined);
    assert.equal((await taskRuns.getRun(db, id))?.lastError, 'payload: expected string');
  });
});

// task_runs: claim a run by (task, idempotency key), complete or fail it fenced by its attempt
// number, and read runs for the CLI and the dashboard. Time is always a parameter (the Clock).
import type { Queryable } from '../db/db.ts';
import { pgJson, pgTextOrNull } from '../db/pg-text.ts';

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'dead';

/**
 * When a run's latest attempt started (a refused delivery: when it was recorded): what lists order
 * by and filter on. Migration 0017 indexes this expression; a completion never changes it.
 */
export const RUN_ACTIVITY = 'coalesce(started_at, created_at)';

const FAILURE: ReadonlySet<RunStatus> = new Set(['failed', 'dead']);

export interface AttemptEntry {
  attempt: number;
  status: 'succeeded' | 'failed' | 'dead';
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  error: string | null;
  /** X-CloudTasks-TaskRetryCount of the delivery, when there was one. */
  retryCount: number | null;
}

export interface TaskRun {
  id: number;
  task: string;
  idempotencyKey: string;
  status: RunStatus;
  attempts: number;
  leaseExpiresAt: Date | null;
  payload: unknown;
  result: unknown;
  lastError: string | null;
  cloudTaskName: string | null;
  queueName: string | null;
  delivery: Record<string, unknown>;
  attemptHistory: AttemptEntry[];
  replays: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

export interface ClaimInput {
  task: string;
  key: string;
  payload: unknown;
  payloadHash: string;
  cloudTaskName: string | null;
  queueName: string | null;
  delivery: Record<string, unknown>;
  now: Date;
  leaseMs: number;
}

export type ClaimResult =
  | { kind: 'claimed'; runId: number; attempt: number }
  | { kind: 'duplicate'; runId: number; status: 'succeeded' | 'dead' }
  | { kind: 'busy'; runId: number; leaseExpiresAt: Date }
  | { kind: 'conflict'; runId: number };

// Claim in one statement, race-free on the unique (task, key): a new run, a failed one, or a
// running one whose lease expired (its instance died) is taken, and its attempt counter moves on.
const CLAIM_RUN = `
  INSERT INTO task_runs (task, idempotency_key, status, attempts, lease_expires_at, payload, payload_hash,
                         cloud_task_name, queue_name, delivery, created_at, started_at, updated_at)
  VALUES ($1, $2, 'running', 1, $3, $4, $5, $6, $7, $8, $9, $9, $9)
  ON CONFLICT (task, idempotency_key) DO UPDATE
     SET status = 'running', attempts = task_runs.attempts + 1, lease_expires_at = EXCLUDED.lease_expires_at,
         cloud_task_name = EXCLUDED.cloud_task_name, queue_name = EXCLUDED.queue_name,
         delivery = EXCLUDED.delivery, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
         finished_at = NULL
   WHERE task_runs.payload_hash = EXCLUDED.payload_hash
     AND (task_runs.status = 'failed'
          OR (task_runs.status = 'running' AND task_runs.lease_expires_at <= EXCLUDED.started_at))
  RETURNING id, attempts`;

// The same claim for many deliveries in one statement (group commit): one row per delivery from
// parallel arrays, the same conflict rule. The caller never puts one (task, key) twice in a batch (a
// statement cannot update a row twice) and sorts the rows by (task, key), so two batches in flight
// lock the rows they share in the same order and cannot deadlock.
const CLAIM_RUNS = `
  INSERT INTO task_runs (task, idempotency_key, status, attempts, lease_expires_at, payload, payload_hash,
                         cloud_task_name, queue_name, delivery, created_at, started_at, updated_at)
  SELECT u.task, u.key, 'running', 1, u.lease, u.payload, u.hash, u.cloud_task_name, u.queue_name, u.delivery,
         u.now, u.now, u.now
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[], $5::text[], $6::text[], $7::text[],
                $8::jsonb[], $9::timestamptz[])
         AS u(task, key, lease, payload, hash, cloud_task_name, queue_name, delivery, now)
  ON CONFLICT (task, idempotency_key) DO UPDATE
     SET status = 'running', attempts = task_runs.attempts + 1, lease_expires_at = EXCLUDED.lease_expires_at,
         cloud_task_name = EXCLUDED.cloud_task_name, queue_name = EXCLUDED.queue_name,
         delivery = EXCLUDED.delivery, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
         finished_at = NULL
   WHERE task_runs.payload_hash = EXCLUDED.payload_hash
     AND (task_runs.status = 'failed'
          OR (task_runs.status = 'running' AND task_runs.lease_expires_at <= EXCLUDED.started_at))
  RETURNING task, idempotency_key, id, attempts`;

// WHY_NOT_CLAIMED for the deliveries of a batch that the batched claim did not return.
const WHY_NOT_CLAIMED_MANY = `
  SELECT t.task, t.idempotency_key, t.id, t.status, t.lease_expires_at, t.payload_hash
    FROM unnest($1::text[], $2::text[]) AS u(task, key)
    JOIN task_runs t ON t.task = u.task AND t.idempotency_key = u.key`;

// Only when the claim returned nothing: why (a duplicate, a live lease, another payload).
const WHY_NOT_CLAIMED = `
  SELECT id, status, lease_expires_at, payload_hash FROM task_runs WHERE task = $1 AND idempotency_key = $2`;

// Finish an attempt, fenced: only the attempt that holds the run may finish it; the attempt is
// appended to task_attempts in the same statement. No index of task_runs names a column that a
// first attempt's success changes (migration 0017), so that update is HOT: it writes no index entry.
// A failure always records an error (coalesce): failed and dead runs are indexed by it.
const FINISH_ATTEMPT = `
  WITH run AS (
    UPDATE task_runs
       SET status = $3, result = $4, last_error = CASE WHEN $3 = 'succeeded' THEN NULL ELSE coalesce($5, '') END,
           lease_expires_at = NULL, finished_at = $6, updated_at = $6
     WHERE id = $1 AND attempts = $2 AND status = 'running'
    RETURNING id, task)
  INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
  SELECT id, $2::int, task, $3::text, $7::timestamptz, $6::timestamptz, $8::float8, $5::text, $9::int FROM run`;

// FINISH_ATTEMPT for many attempts in one statement, each fenced by its own (id, attempts). Rows are
// sorted by id; one run appears at most once in a batch.
const FINISH_ATTEMPTS = `
  WITH u AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[], $8::float8[], $9::int[])
           AS u(id, attempts, status, result, error, finished, started, duration, retry_count)),
  run AS (
    UPDATE task_runs AS t
       SET status = u.status, result = u.result,
           last_error = CASE WHEN u.status = 'succeeded' THEN NULL ELSE coalesce(u.error, '') END,
           lease_expires_at = NULL, finished_at = u.finished, updated_at = u.finished
      FROM u
     WHERE t.id = u.id AND t.attempts = u.attempts AND t.status = 'running'
    RETURNING t.id, t.task)
  INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
  SELECT u.id, u.attempts, run.task, u.status, u.started, u.finished, u.duration, u.error, u.retry_count
    FROM run JOIN u ON u.id = run.id
  RETURNING run_id AS id`;

// A transactional task's failure, recorded after its transaction (and claim) rolled back: the same
// rule as the claim decides whether this delivery may write the outcome.
const RECORD_FAILED_ATTEMPT = `
  WITH run AS (
    INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, cloud_task_name,
                           queue_name, delivery, last_error, created_at, started_at, finished_at, updated_at)
    VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, coalesce($9, ''), $10, $10, $11, $11)
    ON CONFLICT (task, idempotency_key) DO UPDATE
       SET status = EXCLUDED.status, attempts = task_runs.attempts + 1, last_error = EXCLUDED.last_error,
           lease_expires_at = NULL, cloud_task_name = EXCLUDED.cloud_task_name, queue_name = EXCLUDED.queue_name,
           delivery = EXCLUDED.delivery, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
           updated_at = EXCLUDED.updated_at
     WHERE task_runs.payload_hash = EXCLUDED.payload_hash
       AND (task_runs.status = 'failed'
            OR (task_runs.status = 'running' AND task_runs.lease_expires_at <= EXCLUDED.started_at))
    RETURNING id, attempts, task),
  attempt AS (
    INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
    SELECT id, attempts, task, $3::text, $12::timestamptz, $11::timestamptz, $13::float8, $9::text, $14::int FROM run)
  SELECT id, attempts FROM run`;

// A delivery refused before any handler ran (invalid payload): recorded dead unless the key has a run.
const RECORD_REFUSED = `
  INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, cloud_task_name,
                         queue_name, delivery, last_error, created_at, started_at, finished_at, updated_at)
  VALUES ($1, $2, 'dead', 0, $3, $4, $5, $6, $7, coalesce($8, ''), $9, $9, $9, $9)
  ON CONFLICT (task, idempotency_key) DO NOTHING
  RETURNING id`;

// A run's attempts, oldest first, in the shape of AttemptEntry (times as toISOString writes them).
const ATTEMPT_HISTORY = `(
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'attempt', a.attempt, 'status', a.status,
           'startedAt', to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'finishedAt', to_char(a.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'durationMs', a.duration_ms, 'error', a.error, 'retryCount', a.retry_count) ORDER BY a.attempt), '[]')
    FROM task_attempts a WHERE a.run_id = task_runs.id) AS attempt_history`;

const RUN_COLUMNS = `id, task, idempotency_key, status, attempts, lease_expires_at, payload, result, last_error,
  cloud_task_name, queue_name, delivery, ${ATTEMPT_HISTORY}, replays, created_at, started_at, finished_at, updated_at`;

// Replay: a dead or failed run becomes claimable again by a new series of deliveries.
const MARK_FOR_REPLAY = `
  UPDATE task_runs SET status = 'failed', replays = replays + 1, updated_at = $2
   WHERE id = $1 AND status IN ('dead', 'failed')
  RETURNING ${RUN_COLUMNS}`;

interface RunRow {
  id: number;
  task: string;
  idempotency_key: string;
  status: RunStatus;
  attempts: number;
  lease_expires_at: Date | null;
  payload: unknown;
  result: unknown;
  last_error: string | null;
  cloud_task_name: string | null;
  queue_name: string | null;
  delivery: Record<string, unknown>;
  attempt_history: AttemptEntry[];
  replays: number;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

const toRun = (r: RunRow): TaskRun => ({
  id: r.id,
  task: r.task,
  idempotencyKey: r.idempotency_key,
  status: r.status,
  attempts: r.attempts,
  leaseExpiresAt: r.lease_expires_at,
  payload: r.payload,
  result: r.result,
  lastError: r.last_error,
  cloudTaskName: r.cloud_task_name,
  queueName: r.queue_name,
  delivery: r.delivery,
  attemptHistory: r.attempt_history,
  replays: r.replays,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  updatedAt: r.updated_at,
});

const json = (v: unknown) => (v === undefined ? null : pgJson(v));

/** What finishAttempt takes. */
export interface FinishInput {
  runId: number;
  attempt: number;
  status: AttemptEntry['status'];
  result?: unknown;
  entry: AttemptEntry;
}

/** One item's outcome in a batch: the statement served it, or failed it alone. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

const claimKey = (c: { task: string; key: string }) => `${c.task}\u0000${c.key}`;
const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

type WhyRow = { id: number; status: RunStatus; lease_expires_at: Date | null; payload_hash: string };

/** Why a claim returned no row: a duplicate, a live lease, or another payload for the key. */
function notClaimedFrom(input: ClaimInput, existing: WhyRow | undefined): ClaimResult {
  if (!existing) throw new Error(`task run ${input.task}/${input.key} vanished while being claimed`);
  if (existing.payload_hash !== input.payloadHash) return { kind: 'conflict', runId: existing.id };
  if (existing.status === 'succeeded' || existing.status === 'dead') {
    return { kind: 'duplicate', runId: existing.id, status: existing.status };
  }
  // running with a live lease (or failed and reclaimed by a concurrent delivery a moment ago)
  return { kind: 'busy', runId: existing.id, leaseExpiresAt: existing.lease_expires_at ?? input.now };
}

export const taskRuns = {
  async claimRun(q: Queryable, input: ClaimInput): Promise<ClaimResult> {
    const claimed = await q.query<{ id: number; attempts: number }>(CLAIM_RUN, [
      input.task,
      input.key,
      new Date(input.now.getTime() + input.leaseMs),
      json(input.payload),
      input.payloadHash,
      input.cloudTaskName,
      input.queueName,
      json(input.delivery),
      input.now,
    ]);
    const row = claimed.rows[0];
    if (row) return { kind: 'claimed', runId: row.id, attempt: row.attempts };
    const why = await q.query<WhyRow>(WHY_NOT_CLAIMED, [input.task, input.key]);
    return notClaimedFrom(input, why.rows[0]);
  },

  /**
   * claimRun for many deliveries: one claim statement, then one statement asking why for those it
   * did not claim. The inputs name distinct (task, key) pairs. Throws only when the claim statement
   * fails (then nothing was claimed and each delivery may be claimed on its own); a failure after it
   * is the affected deliveries' own.
   */
  async claimRuns(q: Queryable, inputs: readonly ClaimInput[]): Promise<Array<Settled<ClaimResult>>> {
    const sorted = [...inputs].sort((a, b) => byKey(claimKey(a), claimKey(b)));
    const claimed = await q.query<{ task: string; idempotency_key: string; id: number; attempts: number }>(CLAIM_RUNS, [
      sorted.map((i) => i.task),
      sorted.map((i) => i.key),
      sorted.map((i) => new Date(i.now.getTime() + i.leaseMs)),
      sorted.map((i) => json(i.payload)),
      sorted.map((i) => i.payloadHash),
      sorted.map((i) => i.cloudTaskName),
      sorted.map((i) => i.queueName),
      sorted.map((i) => json(i.delivery)),
      sorted.map((i) => i.now),
    ]);
    const results = new Map<string, Settled<ClaimResult>>();
    for (const row of claimed.rows) {
      results.set(claimKey({ task: row.task, key: row.idempotency_key }), {
        ok: true,
        value: { kind: 'claimed', runId: Number(row.id), attempt: row.attempts },
      });
    }
    const rest = sorted.filter((i) => !results.has(claimKey(i)));
    if (rest.length > 0) {
      try {
        const why = await q.query<WhyRow & { task: string; idempotency_key: string }>(WHY_NOT_CLAIMED_MANY, [
          rest.map((i) => i.task),
          rest.map((i) => i.key),
        ]);
        const found = new Map(why.rows.map((r) => [claimKey({ task: r.task, key: r.idempotency_key }), r]));
        for (const i of rest) {
          try {
            results.set(claimKey(i), { ok: true, value: notClaimedFrom(i, found.get(claimKey(i))) });
          } catch (error) {
            results.set(claimKey(i), { ok: false, error });
          }
        }
      } catch {
        // Asked again one by one: each delivery gets its own answer or its own error.
        for (const i of rest) {
          try {
            const why = await q.query<WhyRow>(WHY_NOT_CLAIMED, [i.task, i.key]);
            results.set(claimKey(i), { ok: true, value: notClaimedFrom(i, why.rows[0]) });
          } catch (error) {
            results.set(claimKey(i), { ok: false, error });
          }
        }
      }
    }
    return inputs.map((i) => results.get(claimKey(i))!);
  },

  /** Finishes the attempt; false when this attempt no longer holds the run (its lease was taken over). */
  async finishAttempt(q: Queryable, input: FinishInput): Promise<boolean> {
    const r = await q.query(FINISH_ATTEMPT, [
      input.runId,
      input.attempt,
      input.status,
      json(input.result),
      pgTextOrNull(input.entry.error),
      new Date(input.entry.finishedAt),
      new Date(input.entry.startedAt),
      input.entry.durationMs,
      input.entry.retryCount,
    ]);
    return r.rowCount === 1;
  },

  /**
   * finishAttempt for many attempts of distinct runs in one statement: for each, whether it still
   * held its run. Throws when the statement fails (then nothing was written).
   */
  async finishAttempts(q: Queryable, inputs: readonly FinishInput[]): Promise<boolean[]> {
    const sorted = [...inputs].sort((a, b) => a.runId - b.runId);
    const r = await q.query<{ id: number }>(FINISH_ATTEMPTS, [
      sorted.map((i) => i.runId),
      sorted.map((i) => i.attempt),
      sorted.map((i) => i.status),
      sorted.map((i) => json(i.result)),
      sorted.map((i) => pgTextOrNull(i.entry.error)),
      sorted.map((i) => new Date(i.entry.finishedAt)),
      sorted.map((i) => new Date(i.entry.startedAt)),
      sorted.map((i) => i.entry.durationMs),
      sorted.map((i) => i.entry.retryCount),
    ]);
    const finished = new Set(r.rows.map((row) => Number(row.id)));
    return inputs.map((i) => finished.has(i.runId));
  },

  /** After a transactional attempt rolled back: records its failure if no other delivery owns the run. */
  async recordFailedAttempt(
    q: Queryable,
    input: Omit<ClaimInput, 'leaseMs'> & { status: 'failed' | 'dead'; entry: AttemptEntry },
  ): Promise<{ runId: number; attempt: number } | undefined> {
    const r = await q.query<{ id: number; attempts: number }>(RECORD_FAILED_ATTEMPT, [
      input.task,
      input.key,
      input.status,
      json(input.payload),
      input.payloadHash,
      input.cloudTaskName,
      input.queueName,
      json(input.delivery),
      pgTextOrNull(input.entry.error),
      input.now,
      new Date(input.entry.finishedAt),
      new Date(input.entry.startedAt),
      input.entry.durationMs,
      input.entry.retryCount,
    ]);
    const row = r.rows[0];
    return row ? { runId: row.id, attempt: row.attempts } : undefined;
  },

  /** A delivery refused before its handler (a payload that fails validation). */
  async recordRefused(
    q: Queryable,
    input: Omit<ClaimInput, 'leaseMs'> & { error: string },
  ): Promise<number | undefined> {
    const r = await q.query<{ id: number }>(RECORD_REFUSED, [
      input.task,
      input.key,
      json(input.payload),
      input.payloadHash,
      input.cloudTaskName,
      input.queueName,
      json(input.delivery),
      pgTextOrNull(input.error),
      input.now,
    ]);
    return r.rows[0]?.id;
  },

  async getRun(q: Queryable, id: number): Promise<TaskRun | undefined> {
    const r = await q.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM task_runs WHERE id = $1`, [id]);
    return r.rows[0] && toRun(r.rows[0]);
  },

  async findRun(q: Queryable, task: string, key: string): Promise<TaskRun | undefined> {
    const r = await q.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM task_runs WHERE task = $1 AND idempotency_key = $2`, [
      task,
      key,
    ]);
    return r.rows[0] && toRun(r.rows[0]);
  },

  async listRuns(
    q: Queryable,
    filter: { status?: RunStatus; task?: string; keyContains?: string; since?: Date; limit?: number } = {},
  ): Promise<TaskRun[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      values.push(value);
      where.push(sql.replace('?', `$${values.length}`));
    };
    // Failed and dead runs through their partial index (migration 0017): they always have an error.
    if (filter.status)
      add(`${FAILURE.has(filter.status) ? 'last_error IS NOT NULL AND ' : ''}status = ?`, filter.status);
    if (filter.task) add('task = ?', filter.task);
    if (filter.keyContains) add("idempotency_key LIKE '%' || ? || '%'", filter.keyContains);
    if (filter.since) add(`${RUN_ACTIVITY} >= ?`, filter.since);
    values.push(Math.min(filter.limit ?? 50, 1000));
    const sql = `SELECT ${RUN_COLUMNS} FROM task_runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY ${RUN_ACTIVITY} DESC, id DESC LIMIT $${values.length}`;
    return (await q.query<RunRow>(sql, values)).rows.map(toRun);
  },

  /** Makes a dead or failed run claimable again; undefined when it is not dead or failed. */
  async markForReplay(q: Queryable, id: number, now: Date): Promise<TaskRun | undefined> {
    const r = await q.query<RunRow>(MARK_FOR_REPLAY, [id, now]);
    return r.rows[0] && toRun(r.rows[0]);
  },
};

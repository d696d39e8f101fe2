// The SQL of the dashboard's runs, overview, outbox and health pages: each statement a named
// constant with its purpose, every list a keyset page on an index (migrations 0002, 0004, 0011, 0016),
// and EXPLAIN_CASES for the benchmark (bench/dashboard.bench.ts prints their plans).
import type { Queryable } from '../db/db.ts';
import type { RunStatus } from '../tasks/task-runs.repository.ts';
import type { ExplainCase } from './explain.ts';

// The benchmark imports the type from here with the runs' cases.
export type { ExplainCase };

export const RUN_STATUSES: readonly RunStatus[] = ['running', 'succeeded', 'failed', 'dead'];

/** What the runs page filters on; every field is optional and travels in the query string. */
export interface RunFilter {
  task?: string | undefined;
  status?: RunStatus | undefined;
  /** Last activity (updated_at) at or after. */
  from?: Date | undefined;
  /** Last activity (updated_at) before. */
  to?: Date | undefined;
  /** Idempotency keys starting with this text (an exact key is its own prefix). */
  keyPrefix?: string | undefined;
}

/** The last row of a page: its updated_at to the microsecond (as PostgreSQL wrote it) and id. */
export interface RunCursor {
  at: string;
  id: number;
}

export interface RunListRow {
  id: number;
  task: string;
  idempotency_key: string;
  status: RunStatus;
  attempts: number;
  replays: number;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  duration_ms: number | null;
  cursor_at: string;
}

// The list's columns; the error is cut short (the run's page has all of it). cursor_at keeps the
// microseconds a JavaScript Date would drop, so the next page starts exactly after this row.
const RUN_LIST_COLUMNS = `id, task, idempotency_key, status, attempts, replays, left(last_error, 300) AS last_error,
  created_at, updated_at,
  (extract(epoch FROM finished_at - started_at) * 1000)::float8 AS duration_ms,
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;

// Running runs are found through their own small partial index (0011), whose predicate names the
// lease so that no statement of the push path can ever be planned on it (see the migration).
const RUNNING = `status = 'running' AND lease_expires_at IS NOT NULL`;

/** Escapes LIKE's wildcards, so a key prefix is matched literally. */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** WHERE clauses and their parameters for a filter (and, for a page after the first, its cursor). */
function whereFor(filter: RunFilter, cursor?: RunCursor): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const p = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (filter.task !== undefined) clauses.push(`task = ${p(filter.task)}`);
  // A status is one of four literals (checked), written into the SQL so that the planner can match
  // the partial indexes whatever plan it keeps for the statement.
  if (filter.status !== undefined && !RUN_STATUSES.includes(filter.status)) throw new Error('unknown status');
  if (filter.status === 'running') clauses.push(RUNNING);
  else if (filter.status !== undefined) clauses.push(`status = '${filter.status}'`);
  if (filter.from !== undefined) clauses.push(`updated_at >= ${p(filter.from)}`);
  if (filter.to !== undefined) clauses.push(`updated_at < ${p(filter.to)}`);
  if (filter.keyPrefix !== undefined) clauses.push(`idempotency_key LIKE ${p(likePrefix(filter.keyPrefix))}`);
  if (cursor) {
    // Spelled out rather than as a row comparison, so the index on updated_at bounds the scan.
    const at = p(cursor.at);
    clauses.push(`updated_at <= ${at}::timestamptz AND (updated_at < ${at}::timestamptz OR id < ${p(cursor.id)})`);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
}

/** Runs newest first (by last activity), one page of a keyset pagination. */
export function runListQuery(filter: RunFilter, cursor: RunCursor | undefined, limit: number) {
  const { where, params } = whereFor(filter, cursor);
  params.push(limit);
  return {
    sql: `SELECT ${RUN_LIST_COLUMNS} FROM task_runs ${where} ORDER BY updated_at DESC, id DESC LIMIT $${params.length}`,
    params,
  };
}

/** How many runs match, counted up to a cap so that a broad filter stays cheap. */
export function runCountQuery(filter: RunFilter, cap: number) {
  const { where, params } = whereFor(filter);
  params.push(cap + 1);
  return {
    sql: `SELECT count(*)::int AS n FROM (SELECT 1 FROM task_runs ${where} LIMIT $${params.length}) capped`,
    params,
  };
}

/** The ids of the newest dead runs matching a filter (bulk replay takes at most `limit`). */
export function deadRunIdsQuery(filter: RunFilter, limit: number) {
  const { where, params } = whereFor({ ...filter, status: 'dead' });
  params.push(limit);
  return {
    sql: `SELECT id FROM task_runs ${where} ORDER BY updated_at DESC, id DESC LIMIT $${params.length}`,
    params,
  };
}

/** How many dead runs match a filter (for the bulk replay's confirmation). */
export function deadRunCountQuery(filter: RunFilter) {
  const { where, params } = whereFor({ ...filter, status: 'dead' });
  return { sql: `SELECT count(*)::int AS n FROM task_runs ${where}`, params };
}

// Overview: each run counts once, in the minute its latest attempt finished, with its outcome.
export const RUNS_PER_MINUTE = `
  SELECT floor(extract(epoch FROM finished_at) / 60)::int8 AS minute, status, count(*)::int AS n
    FROM task_runs WHERE finished_at > $1 AND finished_at <= $2
   GROUP BY 1, 2`;

/** Duration buckets per natural-log unit: bucket i holds [e^((i-1)/16), e^(i/16)) ms, 6.4 % wide, so a
 * percentile read from a bucket's middle is within 3.2 % of the exact one. */
export const DURATION_BUCKETS_PER_LN = 16;

// Overview: per task over the day ($2..$3), split at its last hour ($1) and by failed or not, how
// many runs finished, with the latest attempt's duration as a log-scale histogram (NULL bucket: no
// start recorded). One pass over the day's index entries with a hash aggregate: no sort, and
// width_bucket compares intervals (computing a duration in milliseconds per row goes through
// numeric and cost several times more). The page reads p50 and p95 from the buckets.
export const TASK_HISTOGRAM = `
  SELECT task, finished_at > $1 AS in_hour, status IN ('failed', 'dead') AS failed,
         width_bucket(finished_at - started_at,
                      (SELECT array_agg(exp(k / ${DURATION_BUCKETS_PER_LN}.0) * interval '1 millisecond' ORDER BY k)
                         FROM generate_series(0, 299) AS k)) AS bucket,
         count(*)::int AS n
    FROM task_runs WHERE finished_at > $2 AND finished_at <= $3
   GROUP BY 1, 2, 3, 4`;

// Overview headline: dead runs waiting for an operator (index-only on the status index).
export const DEAD_RUNS = `SELECT count(*)::int AS n FROM task_runs WHERE status = 'dead'`;

// Overview headline and the outbox page: rows waiting to be sent (parked ones included, and
// counted apart), and the oldest one's age.
export const OUTBOX_DEPTH = `SELECT count(*)::int AS n, count(*) FILTER (WHERE parked_at IS NOT NULL)::int AS parked,
  min(created_at) AS oldest FROM task_outbox`;

// The outbox page: rows waiting, oldest first (ids grow with time), with why they wait (retried
// after failures, or parked: migration 0012).
export const OUTBOX_ROWS = `
  SELECT id, task, queue, task_id, idempotency_key, schedule_time, created_at, send_attempts, last_error,
         next_attempt_at, parked_at
    FROM task_outbox ORDER BY id LIMIT $1`;

// The health page: the latest health-check runs, newest first.
export const HEALTH_HISTORY = `
  SELECT id, run_key, status, checks, checked_at FROM health_checks ORDER BY checked_at DESC, id DESC LIMIT $1`;

/** The dashboard's list queries on representative filters, for EXPLAIN in the benchmark. */
export function explainCases(now: Date, sampleTask: string): ExplainCase[] {
  const hour = new Date(now.getTime() - 3_600_000);
  const day = new Date(now.getTime() - 86_400_000);
  const week = new Date(now.getTime() - 7 * 86_400_000);
  const cursor: RunCursor = { at: new Date(now.getTime() - 2 * 86_400_000).toISOString(), id: 2 ** 53 - 1 };
  const list = (name: string, filter: RunFilter, c?: RunCursor) => ({ name, ...runListQuery(filter, c, 51) });
  return [
    list('runs: newest first', {}),
    list('runs: next page (cursor)', {}, cursor),
    list('runs: dead', { status: 'dead' }),
    list('runs: running', { status: 'running' }),
    list('runs: one task, failed', { task: sampleTask, status: 'failed' }),
    list('runs: one task, a week ago', { task: sampleTask, from: week, to: new Date(week.getTime() + 3_600_000) }),
    list('runs: key prefix', { keyPrefix: 'key-00042' }),
    { name: 'runs: capped count, one task', ...runCountQuery({ task: sampleTask }, 10_000) },
    { name: 'bulk replay: dead runs counted', ...deadRunCountQuery({ task: sampleTask }) },
    { name: 'bulk replay: dead run ids', ...deadRunIdsQuery({}, 1000) },
    { name: 'overview: runs per minute', sql: RUNS_PER_MINUTE, params: [hour, now] },
    { name: 'overview: task histogram, the last hour (every request)', sql: TASK_HISTOGRAM, params: [hour, hour, now] },
    {
      name: 'overview: task histogram, the day before the last hour (reread every 30 s)',
      sql: TASK_HISTOGRAM,
      params: [hour, day, hour],
    },
    { name: 'overview: dead runs', sql: DEAD_RUNS, params: [] },
    { name: 'outbox: rows', sql: OUTBOX_ROWS, params: [200] },
    { name: 'health: history', sql: HEALTH_HISTORY, params: [100] },
  ];
}

/**
 * For the benchmark, with a fixed "now" and a task that exists in its data.
 * @public bench/dashboard.bench.ts imports every src/admin/*.queries.ts by file name.
 */
export const EXPLAIN_CASES: ExplainCase[] = explainCases(new Date(), 'whatsapp.process_message');

export async function queryRows<T>(q: Queryable, query: { sql: string; params: unknown[] }): Promise<T[]> {
  return (await q.query<T>(query.sql, query.params)).rows;
}

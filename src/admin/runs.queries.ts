// The SQL of the dashboard's runs, overview, outbox and health pages: each statement a named
// constant with its purpose, every list a keyset page on an index (migrations 0016, 0017),
// and EXPLAIN_CASES for the benchmark (bench/dashboard.bench.ts prints their plans).
import type { Queryable } from '../db/db.ts';
import { RUN_ACTIVITY, type RunStatus } from '../tasks/task-runs.repository.ts';
import type { ExplainCase } from './explain.ts';

// The benchmark imports the type from here with the runs' cases.
export type { ExplainCase };

export const RUN_STATUSES: readonly RunStatus[] = ['running', 'succeeded', 'failed', 'dead'];

/** What the runs page filters on; every field is optional and travels in the query string. */
export interface RunFilter {
  task?: string | undefined;
  status?: RunStatus | undefined;
  /** Latest attempt started (RUN_ACTIVITY) at or after. */
  from?: Date | undefined;
  /** Latest attempt started (RUN_ACTIVITY) before. */
  to?: Date | undefined;
  /** Idempotency keys starting with this text (an exact key is its own prefix). */
  keyPrefix?: string | undefined;
}

/** The last row of a page: its RUN_ACTIVITY to the microsecond (as PostgreSQL wrote it) and id. */
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
  /** When the latest attempt started (RUN_ACTIVITY): what the list is ordered by. */
  activity_at: Date;
  duration_ms: number | null;
  cursor_at: string;
}

// The list's columns; the error is cut short (the run's page has all of it). cursor_at keeps the
// microseconds a JavaScript Date would drop, so the next page starts exactly after this row.
const RUN_LIST_COLUMNS = `id, task, idempotency_key, status, attempts, replays, left(last_error, 300) AS last_error,
  created_at, updated_at, ${RUN_ACTIVITY} AS activity_at,
  (extract(epoch FROM finished_at - started_at) * 1000)::float8 AS duration_ms,
  to_char(${RUN_ACTIVITY} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;

// No index tells running runs from finished ones (migration 0017: any such index would have to
// change when a run succeeds, and the push path's completion would stop being HOT): the running
// list walks the newest runs, and a page of running runs costs the runs started since the oldest
// of them.
const RUNNING = `status = 'running' AND lease_expires_at IS NOT NULL`;
// Failed and dead runs always have an error: naming it lets the planner use their partial index.
const FAILED_OR_DEAD = (status: 'failed' | 'dead') => `last_error IS NOT NULL AND status = '${status}'`;

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
  else if (filter.status === 'failed' || filter.status === 'dead') clauses.push(FAILED_OR_DEAD(filter.status));
  else if (filter.status !== undefined) clauses.push(`status = '${filter.status}'`);
  if (filter.from !== undefined) clauses.push(`${RUN_ACTIVITY} >= ${p(filter.from)}`);
  if (filter.to !== undefined) clauses.push(`${RUN_ACTIVITY} < ${p(filter.to)}`);
  if (filter.keyPrefix !== undefined) clauses.push(`idempotency_key LIKE ${p(likePrefix(filter.keyPrefix))}`);
  if (cursor) {
    // Spelled out rather than as a row comparison, so the index on RUN_ACTIVITY bounds the scan.
    const at = p(cursor.at);
    clauses.push(
      `${RUN_ACTIVITY} <= ${at}::timestamptz AND (${RUN_ACTIVITY} < ${at}::timestamptz OR id < ${p(cursor.id)})`,
    );
  }
  return { where: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
}

/** Runs newest first (by when their latest attempt started), one page of a keyset pagination. */
export function runListQuery(filter: RunFilter, cursor: RunCursor | undefined, limit: number) {
  const { where, params } = whereFor(filter, cursor);
  params.push(limit);
  return {
    sql: `SELECT ${RUN_LIST_COLUMNS} FROM task_runs ${where} ORDER BY ${RUN_ACTIVITY} DESC, id DESC LIMIT $${params.length}`,
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
    sql: `SELECT id FROM task_runs ${where} ORDER BY ${RUN_ACTIVITY} DESC, id DESC LIMIT $${params.length}`,
    params,
  };
}

/** How many dead runs match a filter (for the bulk replay's confirmation). */
export function deadRunCountQuery(filter: RunFilter) {
  const { where, params } = whereFor({ ...filter, status: 'dead' });
  return { sql: `SELECT count(*)::int AS n FROM task_runs ${where}`, params };
}

// Overview: each finished attempt counts once, in the minute it finished, with its outcome (from
// task_attempts since migration 0017; a delivery refused before any handler ran is no attempt).
export const RUNS_PER_MINUTE = `
  SELECT floor(extract(epoch FROM finished_at) / 60)::int8 AS minute, status, count(*)::int AS n
    FROM task_attempts WHERE finished_at > $1 AND finished_at <= $2
   GROUP BY 1, 2`;

/** Duration buckets per natural-log unit: bucket i holds [e^((i-1)/16), e^(i/16)) ms, 6.4 % wide, so a
 * percentile read from a bucket's middle is within 3.2 % of the exact one. */
export const DURATION_BUCKETS_PER_LN = 16;

// Overview: per task over the day ($2..$3), split at its last hour ($1) and by failed or not, how
// many attempts finished, with their durations as a log-scale histogram. One pass over the day's
// index entries of task_attempts (index-only: the index includes what is read) with a hash
// aggregate: no sort, and width_bucket compares intervals (computing a duration in milliseconds per
// row goes through numeric and cost several times more). The page reads p50 and p95 from the buckets.
export const TASK_HISTOGRAM = `
  SELECT task, finished_at > $1 AS in_hour, status IN ('failed', 'dead') AS failed,
         width_bucket(finished_at - started_at,
                      (SELECT array_agg(exp(k / ${DURATION_BUCKETS_PER_LN}.0) * interval '1 millisecond' ORDER BY k)
                         FROM generate_series(0, 299) AS k)) AS bucket,
         count(*)::int AS n
    FROM task_attempts WHERE finished_at > $2 AND finished_at <= $3
   GROUP BY 1, 2, 3, 4`;

// Overview headline: dead runs waiting for an operator (through the failures index of 0017).
export const DEAD_RUNS = `SELECT count(*)::int AS n FROM task_runs WHERE last_error IS NOT NULL AND status = 'dead'`;

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

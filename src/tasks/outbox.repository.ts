// task_outbox for operators: the rows still waiting (being retried, or parked after too many
// failed sends, migration 0012), and the two ways out of parking: re-send (the relay takes the
// row again at once, with a fresh count of attempts) or drop (the task is given up). The relay's
// own statements are in outbox-relay.ts.
import type { Queryable } from '../db/db.ts';

export interface OutboxEntry {
  id: number;
  task: string;
  queue: string;
  taskId: string;
  idempotencyKey: string;
  scheduleTime: Date | null;
  createdAt: Date;
  sendAttempts: number;
  lastError: string | null;
  /** When the relay tries it next; null: as soon as it runs (or never, when parked). */
  nextAttemptAt: Date | null;
  parkedAt: Date | null;
}

/** A task_outbox row as stored (the dashboard reads the same columns). */
export interface OutboxRow {
  id: number | string;
  task: string;
  queue: string;
  task_id: string;
  idempotency_key: string;
  schedule_time: Date | null;
  created_at: Date;
  send_attempts: number;
  last_error: string | null;
  next_attempt_at: Date | null;
  parked_at: Date | null;
}

const COLUMNS = `id, task, queue, task_id, idempotency_key, schedule_time, created_at, send_attempts, last_error,
  next_attempt_at, parked_at`;

// Oldest first (ids grow with time); the parked ones from their partial index.
const LIST_ALL = `SELECT ${COLUMNS} FROM task_outbox ORDER BY id LIMIT $1`;
const LIST_PARKED = `SELECT ${COLUMNS} FROM task_outbox WHERE parked_at IS NOT NULL ORDER BY id LIMIT $1`;
const COUNTS = `SELECT count(*)::int AS waiting, count(*) FILTER (WHERE parked_at IS NOT NULL)::int AS parked FROM task_outbox`;
// Locked, so a resend or a drop and the relay (or a second operator) do not act on a row at once.
const LOCK = `SELECT ${COLUMNS} FROM task_outbox WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`;
const PARKED_IDS = 'SELECT id FROM task_outbox WHERE parked_at IS NOT NULL ORDER BY id';
// Due now, as if never tried: the relay's next pass sends it, and it gets every attempt again.
const RESEND = `
  UPDATE task_outbox SET parked_at = NULL, next_attempt_at = NULL, send_attempts = 0, last_error = NULL
   WHERE id = ANY($1::bigint[])`;
const DROP_PARKED = 'DELETE FROM task_outbox WHERE id = ANY($1::bigint[]) AND parked_at IS NOT NULL';

function toEntry(r: OutboxRow): OutboxEntry {
  return {
    id: Number(r.id),
    task: r.task,
    queue: r.queue,
    taskId: r.task_id,
    idempotencyKey: r.idempotency_key,
    scheduleTime: r.schedule_time ? new Date(r.schedule_time) : null,
    createdAt: new Date(r.created_at),
    sendAttempts: r.send_attempts,
    lastError: r.last_error,
    nextAttemptAt: r.next_attempt_at ? new Date(r.next_attempt_at) : null,
    parkedAt: r.parked_at ? new Date(r.parked_at) : null,
  };
}

export const outboxRows = {
  /** Rows waiting, oldest first; only the parked ones with parked: true. */
  async list(q: Queryable, options: { parked?: boolean; limit: number }): Promise<OutboxEntry[]> {
    const r = await q.query<OutboxRow>(options.parked ? LIST_PARKED : LIST_ALL, [options.limit]);
    return r.rows.map(toEntry);
  },

  async counts(q: Queryable): Promise<{ waiting: number; parked: number }> {
    const r = await q.query<{ waiting: number; parked: number }>(COUNTS);
    return { waiting: r.rows[0]?.waiting ?? 0, parked: r.rows[0]?.parked ?? 0 };
  },

  /** The rows with these ids, locked until the transaction ends; ids not in the outbox are absent. */
  async lock(q: Queryable, ids: readonly number[]): Promise<OutboxEntry[]> {
    const r = await q.query<OutboxRow>(LOCK, [ids]);
    return r.rows.map(toEntry);
  },

  async parkedIds(q: Queryable): Promise<number[]> {
    const r = await q.query<{ id: number | string }>(PARKED_IDS);
    return r.rows.map((row) => Number(row.id));
  },

  /** Makes the rows due now with a fresh count of attempts (parked or not); returns how many. */
  async resend(q: Queryable, ids: readonly number[]): Promise<number> {
    return (await q.query(RESEND, [ids])).rowCount;
  },

  /** Deletes the rows among these that are parked; returns how many. */
  async dropParked(q: Queryable, ids: readonly number[]): Promise<number> {
    return (await q.query(DROP_PARKED, [ids])).rowCount;
  },
};

// Sends what the transactional outbox holds: after each commit that wrote to it, and on a timer
// (the sweeper) for whatever a crash left behind. Oldest first, in batches; sent rows are deleted.
// Several instances may relay at once: a row sent twice has the same task id, so the second
// createTask is answered ALREADY_EXISTS and nothing is created twice.
//
// A row whose send fails waits before the next try, twice as long after each failure (up to a
// cap), and after MAX_SEND_ATTEMPTS failures it is parked: kept with its last error, no longer
// sent, listed by `backend outbox list` until an operator re-sends or drops it. A row Cloud Tasks
// refuses as malformed (INVALID_ARGUMENT) is parked at its first failure: the same bytes would be
// refused every time. Everything else (the backend unreachable, an unknown queue that a
// `queues sync` may create, a permission not granted yet) can heal, so it backs off first.
import type { Clock } from '../clock.ts';
import type { Db } from '../db/db.ts';
import type { Logger } from '../logger.ts';
import type { PreparedTask, TaskEnqueuer } from './enqueue.ts';

/** Failed sends of one row before it is parked. (10: with the delays below, about 40 minutes of trying) */
export const MAX_SEND_ATTEMPTS = 10;
/** The wait after a row's first failed send; each further failure doubles it. (10 s: two sweeps) */
export const SEND_RETRY_BASE_MS = 10_000;
/** The longest wait between two sends of one row. (10 min) */
export const SEND_RETRY_MAX_MS = 600_000;
/** gRPC INVALID_ARGUMENT: Cloud Tasks refuses the task itself (its name, deadline, size, URL). */
const INVALID_ARGUMENT = 3;

// Only rows that are due: not parked, and past their wait (NULL: never failed). Oldest first.
const DUE_OLDEST_FIRST = `
  SELECT id, task, queue, task_id, idempotency_key, payload, schedule_time, deadline_seconds, traceparent
    FROM task_outbox
   WHERE parked_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
   ORDER BY id LIMIT $1`;
const DELETE_SENT = 'DELETE FROM task_outbox WHERE id = ANY($1::bigint[])';
/** createTask calls in flight at once while relaying. (16: beyond that the emulator and the client, not the relay, set the pace) */
const SEND_CONCURRENCY = 16;
// One more failure: the next try waits base·2^(failures before this one), at most the cap; the row
// is parked ($3 true) when this failure is its last allowed one or can never succeed. The count is
// taken from the row, so two relays failing the same row at once still add up.
const RECORD_SEND_FAILURE = `
  UPDATE task_outbox
     SET send_attempts = send_attempts + 1,
         last_error = $2,
         parked_at = CASE WHEN $3::boolean OR send_attempts + 1 >= $5 THEN $4::timestamptz END,
         next_attempt_at = CASE WHEN $3::boolean OR send_attempts + 1 >= $5 THEN NULL
           ELSE $4::timestamptz + least($6::float8 * power(2, send_attempts), $7::float8) * interval '1 millisecond' END
   WHERE id = $1
   RETURNING send_attempts, parked_at, next_attempt_at`;

interface OutboxRow {
  id: number;
  task: string;
  queue: string;
  task_id: string;
  idempotency_key: string;
  payload: unknown;
  schedule_time: Date | null;
  deadline_seconds: number;
  traceparent: string | null;
}

export interface RelayResult {
  sent: number;
  /** Sends that failed in this pass, the parked ones included. */
  failed: number;
  /** Rows parked in this pass. */
  parked: number;
}

/** When a row is retried and when it is parked; the defaults are the constants above. */
export interface RetryPolicy {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

/** The wait before the next send of a row that has failed `failures` times (1 or more). */
export function sendRetryDelayMs(
  failures: number,
  policy: Pick<RetryPolicy, 'baseMs' | 'maxMs'> = { baseMs: SEND_RETRY_BASE_MS, maxMs: SEND_RETRY_MAX_MS },
): number {
  return Math.min(policy.baseMs * 2 ** Math.max(0, failures - 1), policy.maxMs);
}

/** True for an error no retry of the same row can fix: park it at once. ALREADY_EXISTS never gets here (it is a success). */
export function parksAtOnce(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === INVALID_ARGUMENT;
}

export class OutboxRelay {
  readonly #db: Db;
  readonly #enqueuer: TaskEnqueuer;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #batchSize: number;
  readonly #policy: RetryPolicy;
  #running: Promise<RelayResult> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: {
    db: Db;
    enqueuer: TaskEnqueuer;
    log: Logger;
    clock: Clock;
    batchSize?: number;
    retry?: Partial<RetryPolicy>;
  }) {
    this.#db = deps.db;
    this.#enqueuer = deps.enqueuer;
    this.#log = deps.log;
    this.#clock = deps.clock;
    this.#batchSize = deps.batchSize ?? 100;
    this.#policy = {
      maxAttempts: deps.retry?.maxAttempts ?? MAX_SEND_ATTEMPTS,
      baseMs: deps.retry?.baseMs ?? SEND_RETRY_BASE_MS,
      maxMs: deps.retry?.maxMs ?? SEND_RETRY_MAX_MS,
    };
  }

  /** Asks for a flush soon; concurrent asks share one pass (and one more if asked meanwhile). */
  kick = (): void => {
    void this.flush().catch((err: unknown) => this.#log.error({ err }, 'outbox relay failed'));
  };

  /** Sends every row that is due now; resolves when done (tests and the sweeper call this). */
  flush(): Promise<RelayResult> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.kick();
      }
    });
    return this.#running;
  }

  /** The sweeper: a flush every intervalMs. (Default: 5000) */
  start(intervalMs = 5000): void {
    this.#timer = setInterval(this.kick, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => {});
  }

  async #drain(): Promise<RelayResult> {
    const total: RelayResult = { sent: 0, failed: 0, parked: 0 };
    for (;;) {
      const { rows } = await this.#db.query<OutboxRow>(DUE_OLDEST_FIRST, [
        this.#batchSize,
        new Date(this.#clock.now()),
      ]);
      if (rows.length === 0) return total;
      const sent: number[] = [];
      // Oldest first, a few createTask calls in flight at once (Cloud Tasks promises no order
      // among tasks due at the same time anyway).
      for (let i = 0; i < rows.length; i += SEND_CONCURRENCY) {
        await Promise.all(
          rows.slice(i, i + SEND_CONCURRENCY).map(async (row) => {
            try {
              await this.#enqueuer.send(toPrepared(row));
              sent.push(row.id);
            } catch (err) {
              total.failed++;
              if (await this.#recordFailure(row, err)) total.parked++;
            }
          }),
        );
      }
      if (sent.length > 0) await this.#db.query(DELETE_SENT, [sent]);
      total.sent += sent.length;
      // A batch where nothing went out stops the pass (the backend is likely down: the sweeper
      // tries again later). One where some rows failed goes on: those rows now wait for their
      // next try, so the next batch cannot pick them again, and one poison row holds nothing up.
      if (sent.length === 0 || rows.length < this.#batchSize) return total;
    }
  }

  /** Counts a failed send; true when the row is now parked. */
  async #recordFailure(row: OutboxRow, err: unknown): Promise<boolean> {
    const error = err instanceof Error ? err.message : String(err);
    const { rows } = await this.#db.query<{
      send_attempts: number;
      parked_at: Date | null;
      next_attempt_at: Date | null;
    }>(RECORD_SEND_FAILURE, [
      row.id,
      error,
      parksAtOnce(err),
      new Date(this.#clock.now()),
      this.#policy.maxAttempts,
      this.#policy.baseMs,
      this.#policy.maxMs,
    ]);
    const after = rows[0];
    if (!after) return false; // sent and deleted meanwhile by another relay
    if (after.parked_at) {
      this.#log.warn(
        { task: row.task, queue: row.queue, outboxId: row.id, attempts: after.send_attempts, error },
        `outbox row ${row.id} (${row.task}) parked after ${after.send_attempts} failed send${after.send_attempts === 1 ? '' : 's'}: ${error}; see \`backend outbox list --parked\``,
      );
      return true;
    }
    this.#log.warn(
      { err, task: row.task, outboxId: row.id, attempts: after.send_attempts, nextAttemptAt: after.next_attempt_at },
      'outbox row not sent; the relay tries it again later',
    );
    return false;
  }
}

function toPrepared(row: OutboxRow): PreparedTask {
  return {
    task: row.task,
    queue: row.queue,
    taskId: row.task_id,
    key: row.idempotency_key,
    payload: row.payload,
    scheduleTime: row.schedule_time ?? undefined,
    deadlineSeconds: row.deadline_seconds,
    traceparent: row.traceparent ?? undefined,
  };
}

// Sends what the transactional outbox holds: after each commit that wrote to it, and on a timer
// (the sweeper) for whatever a crash left behind. Oldest first, in batches; sent rows are deleted.
// Several instances may relay at once: a row sent twice has the same task id, so the second
// createTask is answered ALREADY_EXISTS and nothing is created twice.
import type { Clock } from '../clock.ts';
import type { Db } from '../db/db.ts';
import type { Logger } from '../logger.ts';
import type { PreparedTask, TaskEnqueuer } from './enqueue.ts';

const OLDEST_FIRST = `
  SELECT id, task, queue, task_id, idempotency_key, payload, schedule_time, deadline_seconds, traceparent
    FROM task_outbox ORDER BY id LIMIT $1`;
const DELETE_SENT = 'DELETE FROM task_outbox WHERE id = ANY($1::bigint[])';
/** createTask calls in flight at once while relaying. (16: beyond that the emulator and the client, not the relay, set the pace) */
const SEND_CONCURRENCY = 16;
const RECORD_SEND_FAILURE = 'UPDATE task_outbox SET send_attempts = send_attempts + 1, last_error = $2 WHERE id = $1';

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
  failed: number;
}

export class OutboxRelay {
  readonly #db: Db;
  readonly #enqueuer: TaskEnqueuer;
  readonly #log: Logger;
  readonly #batchSize: number;
  #running: Promise<RelayResult> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: { db: Db; enqueuer: TaskEnqueuer; log: Logger; clock: Clock; batchSize?: number }) {
    this.#db = deps.db;
    this.#enqueuer = deps.enqueuer;
    this.#log = deps.log;
    this.#batchSize = deps.batchSize ?? 100;
  }

  /** Asks for a flush soon; concurrent asks share one pass (and one more if asked meanwhile). */
  kick = (): void => {
    void this.flush().catch((err: unknown) => this.#log.error({ err }, 'outbox relay failed'));
  };

  /** Sends everything in the outbox now; resolves when done (tests and the sweeper call this). */
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
    const total: RelayResult = { sent: 0, failed: 0 };
    for (;;) {
      const { rows } = await this.#db.query<OutboxRow>(OLDEST_FIRST, [this.#batchSize]);
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
              this.#log.warn(
                { err, task: row.task, outboxId: row.id },
                'outbox row not sent; the sweeper will retry it',
              );
              await this.#db.query(RECORD_SEND_FAILURE, [row.id, err instanceof Error ? err.message : String(err)]);
            }
          }),
        );
      }
      if (sent.length > 0) await this.#db.query(DELETE_SENT, [sent]);
      total.sent += sent.length;
      // A batch with failures stops the pass: the sweeper tries again later, oldest first.
      if (sent.length < rows.length || rows.length < this.#batchSize) return total;
    }
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

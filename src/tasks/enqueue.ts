// Enqueueing: one way in for work, through the official Cloud Tasks client, whatever the backend
// (Google Cloud or the emulator differ only in the client's endpoint). Direct, or through the
// transactional outbox when the caller passes its transaction.
import { createHash, randomUUID } from 'node:crypto';
import type { CloudTasksClient } from '@google-cloud/tasks';
import type { Clock } from '../clock.ts';
import type { TasksAuthMode } from '../config.ts';
import type { Queryable, Tx } from '../db/db.ts';
import { pgJson } from '../db/pg-text.ts';
import { valuesList } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { traceparentOf } from '../observability/trace-context.ts';
import type { AnyTask, Delivery, Enqueue, EnqueueOptions, EnqueueResult } from './define-task.ts';
import { DEFAULT_DEADLINE_SECONDS, describeIssues } from './define-task.ts';
import type { TaskRegistry } from './registry.ts';

/** Cloud Tasks' task size limit (1 MB), counting the body, URL and headers. */
export const MAX_TASK_BYTES = 1_000_000;
/** Cloud Tasks refuses a schedule time further than 30 days ahead. */
export const MAX_DELAY_MS = 30 * 24 * 3_600_000;
/** gRPC codes of a createTask worth retrying: safe, because the task id is fixed before the call. */
const RETRYABLE_CODES = new Set([4, 14]); // DEADLINE_EXCEEDED, UNAVAILABLE
const ALREADY_EXISTS = 6;
const CREATE_RETRY_DELAYS_MS = [100, 400, 1600];

export interface EnqueueTarget {
  projectId: string;
  location: string;
  /** Push URLs are publicBaseUrl + /tasks/{task}. */
  publicBaseUrl: string;
  invokerServiceAccount: string;
  audience: string;
  auth: TasksAuthMode;
  secret: string | undefined;
}

/** A task ready to be sent: validated, keyed, named. */
export interface PreparedTask {
  task: string;
  queue: string;
  taskId: string;
  key: string;
  payload: unknown;
  scheduleTime: Date | undefined;
  deadlineSeconds: number;
  /** The W3C traceparent of whoever enqueued it: the task's run continues that trace. */
  traceparent?: string | undefined;
}

const NO_DELIVERY: Delivery = {
  key: undefined,
  queueName: undefined,
  taskName: undefined,
  retryCount: undefined,
  executionCount: undefined,
  eta: undefined,
  scheduleTime: undefined,
  scheduled: false,
};

export interface TaskEnqueuerDeps {
  client: Pick<CloudTasksClient, 'createTask' | 'queuePath' | 'taskPath'>;
  registry: TaskRegistry;
  target: EnqueueTarget;
  clock: Clock;
  log: Logger;
  /** Called after a transaction that wrote to the outbox commits. */
  onOutboxCommit?: () => void;
}

export class TaskEnqueuer {
  readonly #deps: TaskEnqueuerDeps;
  /** Outbox rows waiting for their transaction's beforeCommit. */
  readonly #pending = new WeakMap<object, unknown[][]>();
  constructor(deps: TaskEnqueuerDeps) {
    this.#deps = deps;
  }

  /** Where and how tasks are pushed (also what schedules sync uses for its jobs). */
  get target(): EnqueueTarget {
    return this.#deps.target;
  }

  /** Typed from the registry: a wrong task name or payload does not compile. */
  readonly enqueue: Enqueue = (task, payload, options) => this.enqueueByName(task, payload, options);

  /** The same, by name, for the CLI and other callers: validated against the registry at run time. */
  async enqueueByName(name: string, payload: unknown, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    const prepared = this.prepare(name, payload, options);
    if (options.tx) {
      const row = [
        prepared.task,
        prepared.queue,
        prepared.taskId,
        prepared.key,
        pgJson(prepared.payload),
        prepared.scheduleTime ?? null,
        prepared.deadlineSeconds,
        new Date(this.#deps.clock.now()),
        prepared.traceparent ?? null,
      ];
      const tx = options.tx as Partial<Tx>;
      if (tx.beforeCommit) {
        // Collected, and written in one statement just before COMMIT: a transaction that enqueues
        // fifty tasks makes one round trip for them, not fifty.
        let rows = this.#pending.get(tx);
        if (!rows) {
          const collected: unknown[][] = [];
          rows = collected;
          this.#pending.set(tx, collected);
          tx.beforeCommit(() => {
            this.#pending.delete(tx);
            return insertOutbox(options.tx!, collected);
          });
          if (tx.afterCommit && this.#deps.onOutboxCommit) tx.afterCommit(this.#deps.onOutboxCommit);
        }
        rows.push(row);
      } else {
        await insertOutbox(options.tx, [row]);
        if (tx.afterCommit && this.#deps.onOutboxCommit) tx.afterCommit(this.#deps.onOutboxCommit);
      }
      return { taskName: this.taskPath(prepared), created: true };
    }
    return this.send(prepared);
  }

  /** Validates and names a task without sending it. Throws BAD_REQUEST with the reason. */
  prepare(name: string, payload: unknown, options: EnqueueOptions = {}): PreparedTask {
    const task = this.#deps.registry.tasks.get(name);
    if (!task) {
      const known = [...this.#deps.registry.tasks.keys()].sort().join(', ');
      throw new AppError('BAD_REQUEST', `No task named "${name}". Known tasks: ${known}.`);
    }
    const parsed = task.payload.safeParse(payload);
    if (!parsed.success) {
      const issues = describeIssues(parsed.error);
      throw new AppError('BAD_REQUEST', `Payload does not match ${name}: ${issues}`);
    }
    const delayMs = options.delay === undefined ? 0 : parseDelay(options.delay);
    const deadlineSeconds = options.deadlineSeconds ?? task.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS;
    if (deadlineSeconds < 15 || deadlineSeconds > 1800) {
      throw new AppError('BAD_REQUEST', `Dispatch deadline ${deadlineSeconds} s is outside Cloud Tasks' 15–1800 s.`);
    }
    const key = task.idempotencyKey?.(parsed.data, NO_DELIVERY) ?? options.key ?? `k-${randomUUID()}`;
    const prepared: PreparedTask = {
      task: task.name,
      queue: task.queue,
      taskId: taskIdFor(task, key, options.series ?? 0),
      key,
      // What is sent is what the caller gave (validated): the push route parses it with the same schema.
      payload,
      scheduleTime: delayMs > 0 ? new Date(this.#deps.clock.now() + delayMs) : undefined,
      deadlineSeconds,
      traceparent: traceparentOf(),
    };
    const size = taskSize(this.buildHttpRequest(prepared));
    if (size > MAX_TASK_BYTES) {
      throw new AppError(
        'BAD_REQUEST',
        `Task ${name} is ${size} bytes; Cloud Tasks accepts at most ${MAX_TASK_BYTES}. Store large data in the database and pass its id.`,
      );
    }
    return prepared;
  }

  /** Creates the task in Cloud Tasks; a task that already exists (the same id) is a success. */
  async send(prepared: PreparedTask): Promise<EnqueueResult> {
    const { client } = this.#deps;
    const request = {
      parent: client.queuePath(this.#deps.target.projectId, this.#deps.target.location, prepared.queue),
      task: {
        name: this.taskPath(prepared),
        httpRequest: this.buildHttpRequest(prepared),
        ...(prepared.scheduleTime ? { scheduleTime: toTimestamp(prepared.scheduleTime) } : {}),
        dispatchDeadline: { seconds: prepared.deadlineSeconds },
      },
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await client.createTask(request);
        return { taskName: request.task.name, created: true };
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code === ALREADY_EXISTS) return { taskName: request.task.name, created: false };
        const delay = CREATE_RETRY_DELAYS_MS[attempt];
        if (code === undefined || !RETRYABLE_CODES.has(code) || delay === undefined) throw err;
        this.#deps.log.warn({ err, task: prepared.task, attempt: attempt + 1 }, 'createTask failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  taskPath(prepared: PreparedTask): string {
    const { projectId, location } = this.#deps.target;
    return this.#deps.client.taskPath(projectId, location, prepared.queue, prepared.taskId);
  }

  buildHttpRequest(prepared: PreparedTask) {
    const t = this.#deps.target;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'X-Task-Key': prepared.key };
    if (t.auth === 'secret' && t.secret) headers['X-Task-Secret'] = t.secret;
    // Cloud Tasks sends a task's headers as given: the push carries the enqueuer's trace.
    if (prepared.traceparent) headers.traceparent = prepared.traceparent;
    return {
      url: `${t.publicBaseUrl}/tasks/${prepared.task}`,
      httpMethod: 'POST' as const,
      headers,
      body: Buffer.from(JSON.stringify(prepared.payload)),
      ...(t.auth === 'secret'
        ? {}
        : { oidcToken: { serviceAccountEmail: t.invokerServiceAccount, audience: t.audience } }),
    };
  }
}

const OUTBOX_COLUMNS = 9;
/** Rows per INSERT statement (9 parameters each; PostgreSQL allows 65,535 per statement). */
const OUTBOX_ROWS_PER_STATEMENT = 500;

/** Writes outbox rows, several per statement; a task id already there is left as it is. */
async function insertOutbox(q: Queryable, rows: readonly unknown[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += OUTBOX_ROWS_PER_STATEMENT) {
    const chunk = rows.slice(i, i + OUTBOX_ROWS_PER_STATEMENT);
    const values = valuesList(chunk.length, OUTBOX_COLUMNS);
    await q.query(
      `INSERT INTO task_outbox (task, queue, task_id, idempotency_key, payload, schedule_time, deadline_seconds, created_at, traceparent)
       VALUES ${values} ON CONFLICT (task_id) DO NOTHING`,
      chunk.flat(),
    );
  }
}

/**
 * The Cloud Tasks task id: a hash first (Cloud Tasks wants uniformly spread ids, never sequential
 * ones), then the task name for people reading a queue. The same task and key give the same id, so
 * a repeated enqueue is answered ALREADY_EXISTS; a replay passes a new series.
 */
export function taskIdFor(task: Pick<AnyTask, 'name'>, key: string, series = 0): string {
  const hash = createHash('sha256').update(`${task.name}\u0000${key}\u0000${series}`).digest('hex').slice(0, 32);
  return `${hash}-${task.name.replace(/[^A-Za-z0-9]/g, '-')}`;
}

/** "30s", "5m", "2h", "1d", "250ms" or a number of seconds → milliseconds; at most 30 days. */
export function parseDelay(delay: number | string): number {
  let ms: number;
  if (typeof delay === 'number') ms = delay * 1000;
  else {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(delay.trim());
    if (!m)
      throw new AppError('BAD_REQUEST', `Delay "${delay}" is not valid: expected a number with ms, s, m, h or d.`);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms'];
    ms = Number(m[1]) * unit;
  }
  if (!Number.isFinite(ms) || ms < 0) throw new AppError('BAD_REQUEST', `Delay ${delay} is not valid.`);
  if (ms > MAX_DELAY_MS) throw new AppError('BAD_REQUEST', `Delay ${delay} is more than Cloud Tasks' 30 days.`);
  return ms;
}

function taskSize(http: { url: string; headers: Record<string, string>; body: Buffer }): number {
  const headerBytes = Object.entries(http.headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
  return http.body.length + Buffer.byteLength(http.url) + headerBytes;
}

function toTimestamp(date: Date) {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

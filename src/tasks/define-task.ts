// defineTask and the types that make enqueue and handlers typed from the one registry.
//
// src/task-registry.ts augments `Register` with the list of task definitions, so
// `enqueue('blog.generate_post', payload)` only compiles for a registered name and its payload
// type, and the push route validates with the very same schema at run time. Domains augment
// `TaskServices` with what their handlers need; the composition root provides it.
import type { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { Queryable } from '../db/db.ts';
import type { Logger } from '../logger.ts';

// biome-ignore lint/suspicious/noEmptyInterface: augmented by src/task-registry.ts
export interface Register {}
// biome-ignore lint/suspicious/noEmptyInterface: augmented by each domain's *.task.ts
export interface TaskServices {}

/** What the push route knows about a delivery, from the Cloud Tasks / Cloud Scheduler headers. */
export interface Delivery {
  /** X-Task-Key: the idempotency key the enqueuer chose (set on every task this service creates). */
  key: string | undefined;
  /** X-CloudTasks-QueueName (short id), when pushed by Cloud Tasks. */
  queueName: string | undefined;
  /** X-CloudTasks-TaskName (short id) or X-CloudScheduler-JobName. */
  taskName: string | undefined;
  /** X-CloudTasks-TaskRetryCount: 0 on the first attempt. */
  retryCount: number | undefined;
  /** X-CloudTasks-TaskExecutionCount: responses received, 5xx excluded. */
  executionCount: number | undefined;
  /** X-CloudTasks-TaskETA. */
  eta: Date | undefined;
  /** X-CloudScheduler-ScheduleTime: constant across retries of one scheduled run. */
  scheduleTime: Date | undefined;
  /** True when Cloud Scheduler pushed it. */
  scheduled: boolean;
}

export interface TaskContext<P> {
  readonly payload: P;
  /** 1 on the first attempt (from X-CloudTasks-TaskRetryCount, else the run's own counter). */
  readonly attempt: number;
  /** No retry follows if this attempt fails (the queue's maxAttempts, or the schedule's retries): time to give up cleanly. */
  readonly lastAttempt: boolean;
  readonly task: string;
  readonly runId: number;
  readonly idempotencyKey: string;
  readonly delivery: Delivery;
  /** Aborted at the task's handler deadline, shortly before Cloud Tasks gives up on the request. */
  readonly signal: AbortSignal;
  /** The database; inside a transactional task, the run's own transaction. */
  readonly db: Queryable;
  readonly clock: Clock;
  readonly log: Logger;
  readonly enqueue: Enqueue;
  readonly services: TaskServices;
}

export interface TaskDefinition<Name extends string = string, Schema extends z.ZodType = z.ZodType, Result = unknown> {
  readonly name: Name;
  readonly queue: string;
  readonly payload: Schema;
  /**
   * What makes two deliveries the same run, from the payload (and, for scheduled runs, the schedule
   * time). Called at enqueue too, with an empty delivery. (Default: the key the enqueuer chose and
   * sent as X-Task-Key, else the Cloud Tasks task id; with neither, the delivery is refused as dead.)
   */
  readonly idempotencyKey?: (payload: z.output<Schema>, delivery: Delivery) => string | undefined;
  /** Claim, handler and completion in one database transaction. (Default: false) */
  readonly transactional?: boolean;
  /** The dispatch deadline set on enqueue, in seconds, 15–1800. (Default: 120) */
  readonly deadlineSeconds?: number;
  readonly handler: (ctx: TaskContext<z.output<Schema>>) => Promise<Result>;
}

// biome-ignore lint/suspicious/noExplicitAny: a list of definitions of any payload type
export type AnyTask = TaskDefinition<string, any, unknown>;

type RegisteredTasks = Register extends { tasks: infer T extends readonly AnyTask[] } ? T[number] : AnyTask;
export type TaskName = RegisteredTasks['name'];
export type TaskByName<N extends TaskName> = Extract<RegisteredTasks, { name: N }>;
export type PayloadOf<N extends TaskName> = z.input<TaskByName<N>['payload']>;

export interface EnqueueOptions {
  /** Delay before the first attempt: seconds, or a string such as "30s", "5m", "2h". At most 30 days. */
  delay?: number | string;
  /** The idempotency key, when the task's own rule gives none. (Default: a new random key) */
  key?: string;
  /** Makes a new Cloud Tasks task id for the same key: a replay is a new series of attempts. */
  series?: number;
  /** Dispatch deadline in seconds. (Default: the task's deadlineSeconds) */
  deadlineSeconds?: number;
  /** Write to the outbox in this transaction; sent to Cloud Tasks after commit. */
  tx?: Queryable;
}

export interface EnqueueResult {
  /** The full Cloud Tasks task name. */
  taskName: string;
  /** False when a task with this id already existed (a repeated enqueue): still a success. */
  created: boolean;
}

export type Enqueue = <N extends TaskName>(
  task: N,
  payload: PayloadOf<N>,
  options?: EnqueueOptions,
) => Promise<EnqueueResult>;

export const DEFAULT_DEADLINE_SECONDS = 120;

/** A schema failure as one readable line: "to: expected string; text: required". */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ');
}

export function defineTask<const Name extends string, Schema extends z.ZodType, Result>(
  definition: TaskDefinition<Name, Schema, Result>,
): TaskDefinition<Name, Schema, Result> {
  if (!/^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/.test(definition.name)) {
    throw new Error(`task name "${definition.name}": expected domain.verb_noun, such as blog.generate_post`);
  }
  const deadline = definition.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS;
  if (deadline < 15 || deadline > 1800) {
    throw new Error(`task ${definition.name}: deadlineSeconds must be 15–1800 (Cloud Tasks' dispatch deadline range)`);
  }
  return Object.freeze(definition);
}

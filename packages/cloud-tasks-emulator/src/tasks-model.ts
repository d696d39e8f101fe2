// Cloud Tasks' data as the emulator holds it: queues and tasks as stored (and journaled), their
// live form with the dispatch bookkeeping, and the messages and rules every part of it shares.
import { type ApiError, help, invalidArgument } from './errors.ts';
import type { HeapEntry, MinHeap } from './heap.ts';
import type { HttpMethod, OAuthToken, OidcToken } from './http-target.ts';
import type { ProtoObject } from './protos.ts';
import type { TokenBucket } from './token-bucket.ts';

// Messages recorded from the real service; conformance/cases/ holds each with where it was recorded.
export const MSG_QUEUE_MISSING =
  'Queue does not exist. If you just created the queue, wait at least a minute for the queue to initialize.';
export const MSG_NOT_FOUND = 'Requested entity was not found.';
export const MSG_QUEUE_NAME =
  'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".';
export const MSG_TASK_NAME =
  'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>/tasks/<TASK_ID>"';
// The link the real service attaches (google.rpc.Help) to its queue name errors.
const HELP_QUEUE_NAME =
  'https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#Queue.FIELDS.name';

export type QueueState = 'RUNNING' | 'PAUSED' | 'DISABLED';

export interface RetryConfig {
  maxAttempts: number;
  maxRetryDurationMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  maxDoublings: number;
}

/** A queue as stored (and journaled). */
export interface QueueJson {
  name: string;
  state: QueueState;
  maxDispatchesPerSecond: number;
  maxConcurrentDispatches: number;
  retry: RetryConfig;
  purgeTime?: number;
  stackdriverLoggingConfig?: ProtoObject;
  appEngineRoutingOverride?: ProtoObject;
  iamPolicy?: ProtoObject;
}

export interface AttemptJson {
  scheduleTime: number;
  dispatchTime: number;
  responseTime?: number;
  responseStatus?: { code: number; message: string };
}

/** A task as journaled; the body travels as base64. */
export interface TaskJson {
  name: string;
  named: boolean;
  url: string;
  method: HttpMethod;
  headers: Record<string, string>;
  body?: string;
  oidc?: OidcToken;
  oauth?: OAuthToken;
  scheduleTime: number;
  createTime: number;
  dispatchDeadlineMs: number;
  dispatchCount: number;
  responseCount: number;
  /** Responses other than 5xx: X-CloudTasks-TaskExecutionCount. */
  executionCount: number;
  firstDispatchTime?: number;
  lastAttempt?: AttemptJson;
  /** The previous attempt's HTTP status, for X-CloudTasks-TaskPreviousResponse. */
  lastHttpStatus?: number;
}

export interface Task extends Omit<TaskJson, 'body'> {
  id: string;
  body: Buffer | undefined;
  queue: Queue;
  /** Attempts whose outcome is still awaited (RunTask can add one to a running task). */
  inFlight: number;
  /** The seq of the task's live heap entry; others are stale. */
  heapSeq: number;
}

export interface Due extends HeapEntry {
  task: Task;
}

export interface Queue {
  json: QueueJson;
  id: string;
  tasks: Map<string, Task>;
  heap: MinHeap<Due>;
  bucket: TokenBucket;
  inFlight: number;
  /** When its attempts got a response, over the last minute (v2beta3 stats; not journaled). */
  responses: number[];
}

export function queueNameError(): ApiError {
  return invalidArgument(MSG_QUEUE_NAME, [help('Definition of queue name', HELP_QUEUE_NAME)]);
}

/**
 * max_burst_size is output only: Cloud Tasks picks it from the rate. It reports 100 for the default
 * 500/s; the emulator keeps that ratio (a fifth of a second of dispatches, at least 1).
 */
export function burstFor(rate: number): number {
  return Math.max(1, Math.min(100, Math.ceil(rate / 5)));
}

/** Keeps only the responses of the last minute (executedLastMinuteCount). */
export function pruneResponses(queue: Queue, now: number): void {
  let drop = 0;
  while (drop < queue.responses.length && queue.responses[drop]! <= now - 60_000) drop += 1;
  if (drop > 0) queue.responses.splice(0, drop);
}

export function taskJson(task: Task): TaskJson {
  const { id: _id, body, queue: _queue, inFlight: _inFlight, heapSeq: _heapSeq, ...rest } = task;
  return body ? { ...rest, body: body.toString('base64') } : rest;
}

/** The inverse of taskJson: a journaled task back in its queue's live form (not yet scheduled). */
export function taskFromJson(json: TaskJson, id: string, queue: Queue): Task {
  const { body, ...rest } = json;
  return { ...rest, id, body: body ? Buffer.from(body, 'base64') : undefined, queue, inFlight: 0, heapSeq: -1 };
}

// Cloud Tasks' answers as protobuf plain objects: Task (BASIC and FULL views), Queue as v2 renders
// it, and Queue as v2beta3 renders it, with its read mask and the live QueueStats.
import { invalidArgument } from './errors.ts';
import { maskPaths } from './field-mask.ts';
import { renderTarget } from './http-target.ts';
import type { ProtoObject } from './protos.ts';
import { type AttemptJson, burstFor, pruneResponses, type Queue, type Task } from './tasks-model.ts';
import { msToDuration, msToTimestamp } from './time.ts';

export function renderTask(task: Task, full: boolean): ProtoObject {
  const http = renderTarget(task, 'url');
  // BASIC omits what can be large or sensitive; the body is returned in the FULL view only.
  if (full && task.body) http.body = task.body;
  const out: ProtoObject = {
    name: task.name,
    httpRequest: http,
    scheduleTime: msToTimestamp(task.scheduleTime),
    createTime: msToTimestamp(task.createTime),
    dispatchDeadline: msToDuration(task.dispatchDeadlineMs),
    dispatchCount: task.dispatchCount,
    responseCount: task.responseCount,
    view: full ? 'FULL' : 'BASIC',
  };
  if (task.firstDispatchTime !== undefined) out.firstAttempt = { dispatchTime: msToTimestamp(task.firstDispatchTime) };
  if (task.lastAttempt) out.lastAttempt = renderAttempt(task.lastAttempt);
  return out;
}

function renderAttempt(a: AttemptJson): ProtoObject {
  const out: ProtoObject = { scheduleTime: msToTimestamp(a.scheduleTime), dispatchTime: msToTimestamp(a.dispatchTime) };
  if (a.responseTime !== undefined) out.responseTime = msToTimestamp(a.responseTime);
  if (a.responseStatus) out.responseStatus = a.responseStatus;
  return out;
}

export function renderQueue(queue: Queue): ProtoObject {
  const q = queue.json;
  const out: ProtoObject = {
    name: q.name,
    rateLimits: {
      maxDispatchesPerSecond: q.maxDispatchesPerSecond,
      maxBurstSize: burstFor(q.maxDispatchesPerSecond),
      maxConcurrentDispatches: q.maxConcurrentDispatches,
    },
    retryConfig: {
      maxAttempts: q.retry.maxAttempts,
      maxRetryDuration: msToDuration(q.retry.maxRetryDurationMs),
      minBackoff: msToDuration(q.retry.minBackoffMs),
      maxBackoff: msToDuration(q.retry.maxBackoffMs),
      maxDoublings: q.retry.maxDoublings,
    },
    state: q.state,
  };
  if (q.purgeTime !== undefined) out.purgeTime = msToTimestamp(q.purgeTime);
  if (q.stackdriverLoggingConfig) out.stackdriverLoggingConfig = q.stackdriverLoggingConfig;
  if (q.appEngineRoutingOverride) out.appEngineRoutingOverride = q.appEngineRoutingOverride;
  return out;
}

/**
 * A queue as v2beta3 renders it: without a read mask every field but `stats`; with one, only the
 * fields it names, `stats` included (v2beta3 GetQueueRequest.read_mask).
 */
export function renderQueueV2beta3(queue: Queue, readMask: unknown, now: number): ProtoObject {
  const full: ProtoObject = { ...renderQueue(queue), type: 'PUSH' };
  const paths = maskPaths(readMask);
  if (paths.length === 0) return full;
  const out: ProtoObject = {};
  for (const path of paths) {
    const head = path.split('.')[0]!;
    if (head === 'stats') out.stats = queueStats(queue, now);
    else if (head in full) out[head] = full[head];
    else if (!V2BETA3_QUEUE_FIELDS.has(head)) throw invalidArgument(`Invalid read_mask path "${path}".`);
  }
  return out;
}

/** v2beta3 QueueStats, from the queue's live state. */
function queueStats(queue: Queue, now: number): ProtoObject {
  pruneResponses(queue, now);
  let oldest: number | undefined;
  for (const task of queue.tasks.values())
    if (oldest === undefined || task.scheduleTime < oldest) oldest = task.scheduleTime;
  const stats: ProtoObject = {
    // Waiting, being dispatched, and failed ones waiting for their retry: every task the queue holds.
    tasksCount: queue.tasks.size,
    executedLastMinuteCount: queue.responses.length,
    concurrentDispatchesCount: queue.inFlight,
    effectiveExecutionRate: queue.json.state === 'RUNNING' ? queue.json.maxDispatchesPerSecond : 0,
  };
  if (oldest !== undefined) stats.oldestEstimatedArrivalTime = msToTimestamp(oldest);
  return stats;
}

/** The fields of a v2beta3 Queue, for telling a read mask's unknown path from one left unset. */
const V2BETA3_QUEUE_FIELDS = new Set([
  'name',
  'appEngineHttpQueue',
  'httpTarget',
  'rateLimits',
  'retryConfig',
  'state',
  'purgeTime',
  'taskTtl',
  'tombstoneTtl',
  'stackdriverLoggingConfig',
  'type',
  'stats',
]);

// Cloud Tasks' dispatcher: due tasks leave in schedule-time order through each queue's token
// bucket and concurrency cap, with the X-CloudTasks-* headers, an OIDC or OAuth token and the
// dispatch deadline; a failed attempt is retried after the doubling-then-linear backoff (longer
// for a throttled target) until the queue's retry limits are both met.
import { backoffDelayMs, parseRetryAfterMs } from './backoff.ts';
import type { DeliveryResult } from './deliver.ts';
import { authorization, userHeaders } from './http-target.ts';
import { attemptStatus, failure } from './requests.ts';
import { type AttemptJson, type Due, pruneResponses, type Queue, type Task, taskJson } from './tasks-model.ts';
import type { TasksStore } from './tasks-store.ts';

export class Dispatcher {
  readonly #store: TasksStore;
  #seq = 0;

  constructor(store: TasksStore) {
    this.#store = store;
  }

  /**
   * Starts every attempt that is due at `now` and allowed by its queue's state, token bucket and
   * concurrency cap. `seen` (from tick()) keeps a task to one attempt per call.
   */
  pump(now: number, seen?: Set<object>): void {
    this.#store.pruneTombstones();
    for (const queue of this.#store.queues.values()) {
      if (queue.json.state !== 'RUNNING') continue;
      const deferred: Due[] = [];
      for (;;) {
        const top = this.#liveTop(queue);
        if (!top || top.at > now) break;
        if (seen?.has(top.task)) {
          queue.heap.pop();
          deferred.push(top);
          continue;
        }
        if (queue.inFlight >= queue.json.maxConcurrentDispatches) break;
        if (!queue.bucket.tryTake(now)) break;
        queue.heap.pop();
        seen?.add(top.task);
        this.startAttempt(top.task, now, false);
      }
      for (const entry of deferred) queue.heap.push(entry);
    }
  }

  /** When pump() next has something to do, if anything is waiting (undefined = only on a change). */
  nextWakeAt(now: number): number | undefined {
    let next: number | undefined;
    for (const queue of this.#store.queues.values()) {
      if (queue.json.state !== 'RUNNING') continue;
      const top = this.#liveTop(queue);
      if (!top) continue;
      if (queue.inFlight >= queue.json.maxConcurrentDispatches) continue; // an attempt settling wakes us
      const at = Math.max(top.at, queue.bucket.nextTokenAt(now));
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  /** The queue's earliest entry that still stands for a waiting task; stale entries are dropped on the way. */
  #liveTop(queue: Queue): Due | undefined {
    for (;;) {
      const top = queue.heap.peek();
      if (!top) return undefined;
      const task = top.task;
      if (task.heapSeq === top.seq && task.inFlight === 0 && queue.tasks.get(task.id) === task) return top;
      queue.heap.pop();
    }
  }

  /** Queues the task for its scheduleTime; any earlier entry of it goes stale. */
  schedule(task: Task): void {
    const seq = ++this.#seq;
    task.heapSeq = seq;
    task.queue.heap.push({ at: task.scheduleTime, seq, task });
  }

  /** Sends one attempt now; `forced` is RunTask's, which ignores the queue's state and limits. */
  startAttempt(task: Task, now: number, forced: boolean): void {
    const queue = task.queue;
    const ctx = this.#store.ctx;
    const retryCount = task.dispatchCount;
    task.heapSeq = -1; // whatever heap entry it had is spent
    task.dispatchCount += 1;
    task.inFlight += 1;
    queue.inFlight += 1;
    task.firstDispatchTime ??= now;
    const attempt: AttemptJson = { scheduleTime: task.scheduleTime, dispatchTime: now };
    task.lastAttempt = attempt;

    const bearer = authorization(ctx, task, now);
    const headers = userHeaders(task.headers, bearer !== undefined);
    headers['X-CloudTasks-QueueName'] = queue.id;
    headers['X-CloudTasks-TaskName'] = task.id;
    headers['X-CloudTasks-TaskRetryCount'] = String(retryCount);
    headers['X-CloudTasks-TaskExecutionCount'] = String(task.executionCount);
    headers['X-CloudTasks-TaskETA'] = (task.scheduleTime / 1000).toFixed(6);
    // Only on retries that followed an HTTP answer; the real service sends an empty reason for HTTP targets.
    if (retryCount > 0 && task.lastHttpStatus !== undefined) {
      headers['X-CloudTasks-TaskPreviousResponse'] = String(task.lastHttpStatus);
      headers['X-CloudTasks-TaskRetryReason'] = '';
    }
    if (bearer) headers.Authorization = bearer;

    const pending = ctx.deliverer.deliver({
      url: task.url,
      method: task.method,
      headers,
      body: task.body,
      timeoutMs: task.dispatchDeadlineMs,
    });
    ctx.attempts.track(pending, now + task.dispatchDeadlineMs, (result) => this.#finishAttempt(task, attempt, result));
    if (!ctx.events.has('task:dispatched')) return;
    ctx.events.emit('task:dispatched', {
      task: task.name,
      queue: queue.json.name,
      attempt: task.dispatchCount,
      scheduleTime: task.scheduleTime,
      dispatchTime: now,
      url: task.url,
      forced,
    });
  }

  /** Applies an attempt's outcome: done on a 2xx, or dropped, or retried after the backoff. */
  #finishAttempt(task: Task, attempt: AttemptJson, result: DeliveryResult): void {
    const queue = task.queue;
    const ctx = this.#store.ctx;
    task.inFlight -= 1;
    queue.inFlight -= 1;
    // Deleted, purged, or its queue deleted while the request was out: nothing left to update.
    if (queue.tasks.get(task.id) !== task || this.#store.queues.get(queue.json.name) !== queue) return;
    const now = this.#store.now();
    const { status } = result;
    attempt.responseStatus = attemptStatus(result);
    if (status !== undefined) {
      attempt.responseTime = now;
      task.responseCount += 1;
      queue.responses.push(now);
      pruneResponses(queue, now);
      if (status < 500) task.executionCount += 1;
    }
    task.lastHttpStatus = status;

    if (status !== undefined && status >= 200 && status < 300) {
      this.#store.dropTask(task);
      if (ctx.events.has('task:succeeded')) ctx.events.emit('task:succeeded', { ...attemptEvent(task), status });
      return;
    }
    // Another attempt (RunTask on a running task) is still out; its outcome decides what comes next.
    if (task.inFlight > 0) return;

    const retry = queue.json.retry;
    const attemptsDone = retry.maxAttempts !== -1 && task.dispatchCount >= retry.maxAttempts;
    const durationDone =
      retry.maxRetryDurationMs === 0 || now - (task.firstDispatchTime ?? now) >= retry.maxRetryDurationMs;
    // Stop only when both limits are met (queue.proto max_retry_duration).
    if (attemptsDone && durationDone) {
      this.#store.dropTask(task);
      ctx.log('warn', `task ${task.name} failed for good after ${task.dispatchCount} attempts`, {
        url: task.url,
        ...failure(result),
      });
      ctx.events.emit('task:failed', { ...attemptEvent(task), ...failure(result) });
      return;
    }
    let delayMs = backoffDelayMs(task.dispatchCount, retry);
    if (status === 429 || status === 503) {
      // A throttled target gets a higher backoff, or exactly what its Retry-After asks for when longer.
      const retryAfter = parseRetryAfterMs(result.retryAfter, now);
      delayMs = retryAfter !== undefined ? Math.max(delayMs, retryAfter) : Math.min(retry.maxBackoffMs, delayMs * 2);
    }
    task.scheduleTime = now + delayMs;
    this.schedule(task);
    if (ctx.persistent) ctx.journal.write({ t: 'task', task: taskJson(task) });
    ctx.events.emit('task:retry-scheduled', {
      ...attemptEvent(task),
      ...failure(result),
      retryAt: task.scheduleTime,
      delayMs,
    });
  }
}

function attemptEvent(task: Task): { task: string; queue: string; attempt: number } {
  return { task: task.name, queue: task.queue.json.name, attempt: task.dispatchCount };
}

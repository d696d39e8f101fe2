// Cloud Tasks v2: queues, tasks, their validation and errors,
// and the dispatcher (§3): due tasks leave in schedule-time order through each queue's token
// bucket and concurrency cap, with the X-CloudTasks-* headers, an OIDC token, the dispatch
// deadline, and the doubling-then-linear backoff on failure. RPCs take and return protobuf
// plain objects, the same from gRPC and REST.
import { randomBytes } from 'node:crypto';
import { backoffDelayMs, parseRetryAfterMs } from './backoff.ts';
import type { EmulatorContext } from './context.ts';
import type { DeliveryResult } from './deliver.ts';
import {
  type ApiError,
  alreadyExists,
  failedPrecondition,
  help,
  invalidArgument,
  notFound,
  unimplemented,
} from './errors.ts';
import { applyMask, type MaskRules, maskPaths } from './field-mask.ts';
import { type HeapEntry, MinHeap } from './heap.ts';
import {
  authorization,
  type HttpMethod,
  type OAuthToken,
  type OidcToken,
  parseHttpTarget,
  renderTarget,
  userHeaders,
} from './http-target.ts';
import type { JournalRecord, PersistedState } from './journal.ts';
import { isTaskId, parseQueueName, splitTaskName } from './names.ts';
import type { ProtoObject } from './protos.ts';
import { attemptStatus, checkParent, failure, paginate } from './requests.ts';
import { durationToMs, msToDuration, msToTimestamp, rfc3339InZone, timestampToMs } from './time.ts';
import { TokenBucket } from './token-bucket.ts';

// Messages recorded from the real service (reference §1.4).
const MSG_QUEUE_MISSING =
  'Queue does not exist. If you just created the queue, wait at least a minute for the queue to initialize.';
const MSG_NOT_FOUND = 'Requested entity was not found.';
const MSG_EXISTS = 'Requested entity already exists';
const MSG_QUEUE_EXISTS = 'Queue already exists';
const MSG_QUEUE_TOO_RECENT = 'The queue cannot be created because a queue with this name existed too recently.';
const MSG_QUEUE_NAME =
  'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".';
const MSG_TASK_TOO_RECENT =
  'The task cannot be created because a task with this name existed too recently. For more information about task de-duplication see https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks/create#body.request_body.FIELDS.task.';
const MSG_TASK_GONE =
  'The task no longer exists, though a task with this name existed recently. The task either successfully completed or was deleted.';
// The links the real service attaches (google.rpc.Help) to its name errors.
const HELP_QUEUE_NAME =
  'https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#Queue.FIELDS.name';
const HELP_TASK_NAME =
  'https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.name';
const MSG_TASK_NAME =
  'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>/tasks/<TASK_ID>"';

// Defaults and limits (queue.proto, task.proto, the quotas page; reference §1.2, §2.1, §2.2).
const DEFAULT_RATE = 500;
const MAX_RATE = 500;
const DEFAULT_CONCURRENCY = 1000;
const MAX_CONCURRENCY = 5000;
const DEFAULT_MAX_ATTEMPTS = 100;
const DEFAULT_MIN_BACKOFF_MS = 100;
const DEFAULT_MAX_BACKOFF_MS = 3_600_000;
const DEFAULT_MAX_DOUBLINGS = 16;
const DEFAULT_DEADLINE_MS = 10 * 60_000;
const MIN_DEADLINE_MS = 15_000;
const MAX_DEADLINE_MS = 30 * 60_000;
const MAX_SCHEDULE_AHEAD_MS = 720 * 3_600_000;
const MAX_TASK_BYTES = 1024 * 1024;
/** How long Cloud Tasks blocks a deleted queue's name (cloudtasks.proto DeleteQueue). */
export const CLOUD_QUEUE_TOMBSTONE_MS = 7 * 24 * 3_600_000;
const MAX_QUEUE_PAGE = 9800;
const MAX_TASK_PAGE = 1000;
/**
 * Task names blocked at once, at most: about 150 bytes each, so ~150 MB at the cap, reached only
 * by finishing over 275 tasks a second for a whole hour (the default window). A Map cannot hold
 * more than 2^24 entries anyway.
 */
const MAX_TASK_TOMBSTONES = 1_000_000;

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

interface Task extends Omit<TaskJson, 'body'> {
  id: string;
  body: Buffer | undefined;
  queue: Queue;
  /** Attempts whose outcome is still awaited (RunTask can add one to a running task). */
  inFlight: number;
  /** The seq of the task's live heap entry; others are stale. */
  heapSeq: number;
}

interface Due extends HeapEntry {
  task: Task;
}

interface Queue {
  json: QueueJson;
  id: string;
  tasks: Map<string, Task>;
  heap: MinHeap<Due>;
  bucket: TokenBucket;
  inFlight: number;
  /** When its attempts got a response, over the last minute (v2beta3 stats; not journaled). */
  responses: number[];
}

export interface CloudTasksOptions {
  /** How long a finished or deleted task's name stays blocked. */
  taskTombstoneMs: number;
  /** How long a deleted queue's name stays blocked. */
  queueTombstoneMs: number;
}

export class CloudTasksService {
  readonly #ctx: EmulatorContext;
  readonly #options: CloudTasksOptions;
  readonly #queues = new Map<string, Queue>();
  /** name → blocked until; insertion order is expiry order, since the window is one constant. */
  readonly #taskTombstones = new Map<string, number>();
  readonly #queueTombstones = new Map<string, number>();
  /** name → when deleted, to warn about a reuse Cloud Tasks would refuse (memory only). */
  readonly #queueDeletedAt = new Map<string, number>();
  #seq = 0;

  constructor(ctx: EmulatorContext, options: CloudTasksOptions) {
    this.#ctx = ctx;
    this.#options = options;
  }

  /** The RPCs, by method name in cloudtasks.proto. */
  handlers(): Record<string, (request: ProtoObject) => ProtoObject | Promise<ProtoObject>> {
    return {
      ListQueues: (r) => this.listQueues(r),
      GetQueue: (r) => this.getQueue(r),
      CreateQueue: (r) => this.createQueue(r),
      UpdateQueue: (r) => this.updateQueue(r),
      DeleteQueue: (r) => this.deleteQueue(r),
      PurgeQueue: (r) => this.purgeQueue(r),
      PauseQueue: (r) => this.setQueueState(r, 'PAUSED'),
      ResumeQueue: (r) => this.setQueueState(r, 'RUNNING'),
      GetIamPolicy: (r) => this.getIamPolicy(r),
      SetIamPolicy: (r) => this.setIamPolicy(r),
      TestIamPermissions: (r) => this.testIamPermissions(r),
      ListTasks: (r) => this.listTasks(r),
      GetTask: (r) => this.getTask(r),
      CreateTask: (r) => this.createTask(r),
      DeleteTask: (r) => this.deleteTask(r),
      RunTask: (r) => this.runTask(r),
    };
  }

  /**
   * Cloud Tasks v2beta3 over the same queues: what the dashboard needs from it (GetQueue and
   * ListQueues with the stats a read mask asks for), and the queue actions, which are v2's.
   */
  handlersV2beta3(): Record<string, (request: ProtoObject) => ProtoObject | Promise<ProtoObject>> {
    return {
      ListQueues: (r) => {
        const { page, next } = this.#listQueueNames(r);
        return { queues: page.map((n) => this.#renderV2beta3(this.#queues.get(n)!, r.readMask)), nextPageToken: next };
      },
      GetQueue: (r) => this.#renderV2beta3(this.#queue(r.name), r.readMask),
      PurgeQueue: (r) => this.purgeQueue(r),
      PauseQueue: (r) => this.setQueueState(r, 'PAUSED'),
      ResumeQueue: (r) => this.setQueueState(r, 'RUNNING'),
      DeleteQueue: (r) => this.deleteQueue(r),
    };
  }

  // ── Queues ──────────────────────────────────────────────────────────────────────────────

  listQueues(request: ProtoObject): ProtoObject {
    const { page, next } = this.#listQueueNames(request);
    return { queues: page.map((n) => renderQueue(this.#queues.get(n)!)), nextPageToken: next };
  }

  #listQueueNames(request: ProtoObject): { page: string[]; next: string } {
    const parent = checkParent(request.parent);
    const filter = parseStateFilter(request.filter);
    const names = [...this.#queues.keys()].filter((n) => n.startsWith(`${parent}/queues/`)).sort();
    const selected = filter ? names.filter((n) => this.#queues.get(n)!.json.state === filter) : names;
    return paginate(selected, request.pageSize, request.pageToken, MAX_QUEUE_PAGE);
  }

  /**
   * A queue as v2beta3 renders it: without a read mask every field but `stats`; with one, only the
   * fields it names, `stats` included (v2beta3 GetQueueRequest.read_mask).
   */
  #renderV2beta3(queue: Queue, readMask: unknown): ProtoObject {
    const full: ProtoObject = { ...renderQueue(queue), type: 'PUSH' };
    const paths = maskPaths(readMask);
    if (paths.length === 0) return full;
    const out: ProtoObject = {};
    for (const path of paths) {
      const head = path.split('.')[0]!;
      if (head === 'stats') out.stats = this.#stats(queue);
      else if (head in full) out[head] = full[head];
      else if (!V2BETA3_QUEUE_FIELDS.has(head)) throw invalidArgument(`Invalid read_mask path "${path}".`);
    }
    return out;
  }

  /** v2beta3 QueueStats, from the queue's live state. */
  #stats(queue: Queue): ProtoObject {
    const now = this.#now();
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

  getQueue(request: ProtoObject): ProtoObject {
    return renderQueue(this.#queue(request.name));
  }

  async createQueue(request: ProtoObject): Promise<ProtoObject> {
    const parent = checkParent(request.parent);
    const given: ProtoObject = request.queue ?? {};
    const name = String(given.name ?? '');
    const parsed = parseQueueName(name);
    if (!parsed) throw queueNameError();
    if (parsed.parent !== parent) throw invalidArgument(`${name} must begin with ${parent}.`);
    this.#pruneTombstones();
    if (this.#queues.has(name)) throw alreadyExists(MSG_QUEUE_EXISTS);
    if (this.#queueTombstones.has(name)) throw failedPrecondition(MSG_QUEUE_TOO_RECENT);
    const json = queueFromProto(name, given, undefined);
    this.#warnIfReused(name);
    const queue = this.#addQueue(json);
    await this.#ctx.journal.append({ t: 'queue', queue: json });
    this.#ctx.events.emit('queue:created', { queue: name });
    return renderQueue(queue);
  }

  /** An upsert (cloudtasks.proto UpdateQueue); never changes the state. */
  async updateQueue(request: ProtoObject): Promise<ProtoObject> {
    const given: ProtoObject = request.queue ?? {};
    const name = String(given.name ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const existing = this.#queues.get(name);
    if (!existing) {
      this.#pruneTombstones();
      if (this.#queueTombstones.has(name)) throw failedPrecondition(MSG_QUEUE_TOO_RECENT);
      this.#warnIfReused(name);
    }
    const paths = maskPaths(request.updateMask);
    const merged = updateQueueFields(existing ? renderQueue(existing) : {}, given, paths);
    const json = queueFromProto(name, merged, existing?.json);
    let queue: Queue;
    if (existing) {
      existing.json = json;
      existing.bucket.configure(json.maxDispatchesPerSecond, burstFor(json.maxDispatchesPerSecond), this.#now());
      queue = existing;
    } else {
      queue = this.#addQueue(json);
    }
    await this.#ctx.journal.append({ t: 'queue', queue: json });
    this.#ctx.events.emit(existing ? 'queue:updated' : 'queue:created', { queue: name });
    this.#ctx.wake();
    return renderQueue(queue);
  }

  async deleteQueue(request: ProtoObject): Promise<ProtoObject> {
    const name = String(request.name ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const queue = this.#queues.get(name);
    if (!queue) throw notFound(MSG_NOT_FOUND);
    this.#queues.delete(name);
    this.#queueDeletedAt.delete(name);
    this.#queueDeletedAt.set(name, this.#now());
    const until = this.#now() + this.#options.queueTombstoneMs;
    if (this.#options.queueTombstoneMs > 0) this.#queueTombstones.set(name, until);
    for (const task of queue.tasks.values()) {
      this.#ctx.events.emit('task:deleted', { task: task.name, queue: name, reason: 'queue-deleted' });
    }
    queue.tasks.clear();
    queue.heap.clear();
    await this.#ctx.journal.append({ t: 'queue-deleted', name, until });
    this.#ctx.events.emit('queue:deleted', { queue: name });
    return {};
  }

  /**
   * Locally a deleted queue's name is free again unless queueTombstoneMs says otherwise; Cloud
   * Tasks refuses it for 7 days, so a script that deletes and recreates a queue is told here what
   * would happen there.
   */
  #warnIfReused(name: string): void {
    const deletedAt = this.#queueDeletedAt.get(name);
    if (deletedAt === undefined) return;
    this.#queueDeletedAt.delete(name);
    const ago = this.#now() - deletedAt;
    if (ago >= CLOUD_QUEUE_TOMBSTONE_MS) return;
    this.#ctx.log(
      'warn',
      `queue ${name} is created again ${Math.round(ago / 1000)} s after it was deleted: Cloud Tasks would refuse this with FAILED_PRECONDITION for 7 days (start the emulator with --queue-tombstone 7d to refuse it here too)`,
      { queue: name },
    );
  }

  /**
   * Creates, with the default settings, each named queue that does not exist yet (`--queue` on
   * the command line, as the Go emulator's `-queue`). A bad name throws; a name still blocked by
   * its tombstone is skipped with a warning.
   */
  async createQueuesAtStart(names: readonly string[]): Promise<void> {
    for (const name of names) {
      const parsed = parseQueueName(name);
      if (!parsed) throw invalidArgument(`--queue ${name}: ${MSG_QUEUE_NAME}`);
      if (this.#queues.has(name)) continue;
      try {
        await this.createQueue({ parent: parsed.parent, queue: { name } });
      } catch (err) {
        this.#ctx.log('warn', `queue ${name} not created at start: ${(err as Error).message}`, { queue: name });
      }
    }
  }

  /** Deletes every task created before now and sets purgeTime (cloudtasks.proto PurgeQueue). */
  async purgeQueue(request: ProtoObject): Promise<ProtoObject> {
    const queue = this.#queue(request.name);
    const now = this.#now();
    const records: Promise<void>[] = [];
    for (const task of [...queue.tasks.values()]) {
      if (task.createTime > now) continue;
      const done = this.#removeTask(task, 'purged');
      if (done) records.push(done);
    }
    queue.json.purgeTime = now;
    const saved = this.#ctx.journal.append({ t: 'queue', queue: queue.json });
    await Promise.all(saved ? [...records, saved] : records);
    this.#ctx.events.emit('queue:purged', { queue: queue.json.name, purgeTime: now });
    return renderQueue(queue);
  }

  async setQueueState(request: ProtoObject, state: QueueState): Promise<ProtoObject> {
    const queue = this.#queue(request.name);
    queue.json.state = state;
    await this.#ctx.journal.append({ t: 'queue', queue: queue.json });
    this.#ctx.events.emit(state === 'PAUSED' ? 'queue:paused' : 'queue:resumed', { queue: queue.json.name });
    if (state === 'RUNNING') this.#ctx.wake();
    return renderQueue(queue);
  }

  getIamPolicy(request: ProtoObject): ProtoObject {
    return this.#queue(request.resource).json.iamPolicy ?? {};
  }

  async setIamPolicy(request: ProtoObject): Promise<ProtoObject> {
    const queue = this.#queue(request.resource);
    // Stored as base64 so the journal's JSON keeps it; protobufjs takes base64 for bytes fields.
    const policy: ProtoObject = { ...(request.policy ?? {}), etag: randomBytes(8).toString('base64') };
    queue.json.iamPolicy = policy;
    await this.#ctx.journal.append({ t: 'queue', queue: queue.json });
    return policy;
  }

  /** Nothing is enforced locally, so every permission asked about is granted. */
  testIamPermissions(request: ProtoObject): ProtoObject {
    this.#queue(request.resource);
    return { permissions: request.permissions ?? [] };
  }

  // ── Tasks ───────────────────────────────────────────────────────────────────────────────

  listTasks(request: ProtoObject): ProtoObject {
    const queue = this.#queue(request.parent);
    const full = request.responseView === 'FULL';
    const ids = [...queue.tasks.keys()].sort();
    const { page, next } = paginate(ids, request.pageSize, request.pageToken, MAX_TASK_PAGE);
    return { tasks: page.map((id) => renderTask(queue.tasks.get(id)!, full)), nextPageToken: next };
  }

  getTask(request: ProtoObject): ProtoObject {
    return renderTask(this.#task(request.name), request.responseView === 'FULL');
  }

  async createTask(request: ProtoObject): Promise<ProtoObject> {
    const parent = String(request.parent ?? '');
    if (!parseQueueName(parent)) throw queueNameError();
    const given: ProtoObject | undefined = request.task;
    if (!given) throw invalidArgument('Task is required.');
    let id: string;
    let named = false;
    if (given.name) {
      const split = splitTaskName(String(given.name));
      if (!split) throw invalidArgument(MSG_TASK_NAME);
      if (split.queue !== parent) {
        throw invalidArgument(
          `The queue name from request ('${parent}') must be the same as the queue name in the named task ('${split.queue}').`,
        );
      }
      if (!isTaskId(split.id)) {
        throw invalidArgument(
          `Task ID "${split.id}" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or underscores (_). Task ID must between 1 and 500 characters.`,
          [help('Definition of task ID', HELP_TASK_NAME)],
        );
      }
      id = split.id;
      named = true;
    } else {
      id = generateTaskId();
    }
    const queue = this.#queues.get(parent);
    if (!queue) throw notFound(MSG_QUEUE_MISSING);
    const now = this.#now();
    const task = this.#taskFromProto(queue, id, named, given, now);
    const name = task.name;
    if (named) {
      if (queue.tasks.has(id)) throw alreadyExists(MSG_EXISTS);
      this.#pruneTombstones();
      if (this.#taskTombstones.has(name)) throw alreadyExists(MSG_TASK_TOO_RECENT);
    }
    queue.tasks.set(id, task);
    this.#schedule(task);
    // Acknowledged only once durable: a killed emulator loses no task it said it accepted.
    if (this.#ctx.persistent) await this.#ctx.journal.append({ t: 'task', task: taskJson(task) });
    this.#ctx.events.emit('task:created', { task: name, queue: parent, scheduleTime: task.scheduleTime });
    this.#ctx.wake();
    return renderTask(task, request.responseView === 'FULL');
  }

  /** Works while the task is scheduled or in flight; a finished task is NOT_FOUND. */
  async deleteTask(request: ProtoObject): Promise<ProtoObject> {
    const task = this.#task(request.name);
    const saved = this.#removeTask(task, 'deleted');
    if (saved) await saved;
    return {};
  }

  /** Dispatches now, whatever the queue's state, rate limits or the task's schedule (cloudtasks.proto RunTask). */
  runTask(request: ProtoObject): ProtoObject {
    const task = this.#task(request.name);
    this.#startAttempt(task, this.#now(), true);
    return renderTask(task, request.responseView === 'FULL');
  }

  // ── Dispatch ────────────────────────────────────────────────────────────────────────────

  /**
   * Starts every attempt that is due at `now` and allowed by its queue's state, token bucket and
   * concurrency cap. `seen` (from tick()) keeps a task to one attempt per call.
   */
  pump(now: number, seen?: Set<object>): void {
    this.#pruneTombstones();
    for (const queue of this.#queues.values()) {
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
        this.#startAttempt(top.task, now, false);
      }
      for (const entry of deferred) queue.heap.push(entry);
    }
  }

  /** When pump() next has something to do, if anything is waiting (undefined = only on a change). */
  nextWakeAt(now: number): number | undefined {
    let next: number | undefined;
    for (const queue of this.#queues.values()) {
      if (queue.json.state !== 'RUNNING') continue;
      const top = this.#liveTop(queue);
      if (!top) continue;
      if (queue.inFlight >= queue.json.maxConcurrentDispatches) continue; // an attempt settling wakes us
      const at = Math.max(top.at, queue.bucket.nextTokenAt(now));
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  #liveTop(queue: Queue): Due | undefined {
    for (;;) {
      const top = queue.heap.peek();
      if (!top) return undefined;
      const task = top.task;
      if (task.heapSeq === top.seq && task.inFlight === 0 && queue.tasks.get(task.id) === task) return top;
      queue.heap.pop();
    }
  }

  #schedule(task: Task): void {
    const seq = ++this.#seq;
    task.heapSeq = seq;
    task.queue.heap.push({ at: task.scheduleTime, seq, task });
  }

  #startAttempt(task: Task, now: number, forced: boolean): void {
    const queue = task.queue;
    const ctx = this.#ctx;
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

  #finishAttempt(task: Task, attempt: AttemptJson, result: DeliveryResult): void {
    const queue = task.queue;
    task.inFlight -= 1;
    queue.inFlight -= 1;
    // Deleted, purged, or its queue deleted while the request was out: nothing left to update.
    if (queue.tasks.get(task.id) !== task || this.#queues.get(queue.json.name) !== queue) return;
    const now = this.#now();
    const { status } = result;
    const event = { task: task.name, queue: queue.json.name, attempt: task.dispatchCount };
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
      this.#dropTask(task);
      this.#ctx.events.emit('task:succeeded', { ...event, status });
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
      this.#dropTask(task);
      this.#ctx.log('warn', `task ${task.name} failed for good after ${task.dispatchCount} attempts`, {
        url: task.url,
        ...failure(result),
      });
      this.#ctx.events.emit('task:failed', { ...event, ...failure(result) });
      return;
    }
    let delayMs = backoffDelayMs(task.dispatchCount, retry);
    if (status === 429 || status === 503) {
      // A throttled target gets a higher backoff, or exactly what its Retry-After asks for when longer.
      const retryAfter = parseRetryAfterMs(result.retryAfter, now);
      delayMs = retryAfter !== undefined ? Math.max(delayMs, retryAfter) : Math.min(retry.maxBackoffMs, delayMs * 2);
    }
    task.scheduleTime = now + delayMs;
    this.#schedule(task);
    if (this.#ctx.persistent) this.#ctx.journal.write({ t: 'task', task: taskJson(task) });
    this.#ctx.events.emit('task:retry-scheduled', {
      ...event,
      ...failure(result),
      retryAt: task.scheduleTime,
      delayMs,
    });
  }

  /** Succeeded or failed for good: the task goes, its name is tombstoned. */
  #dropTask(task: Task): void {
    task.queue.tasks.delete(task.id);
    const until = this.#tombstone(task);
    if (this.#ctx.persistent) this.#ctx.journal.write(deletedRecord(task.name, until));
  }

  #removeTask(task: Task, reason: 'deleted' | 'purged'): Promise<void> | undefined {
    task.queue.tasks.delete(task.id);
    const until = this.#tombstone(task);
    this.#ctx.events.emit('task:deleted', { task: task.name, queue: task.queue.json.name, reason });
    return this.#ctx.journal.append(deletedRecord(task.name, until));
  }

  /**
   * Every finished or deleted task's name is blocked for the window, the names the emulator
   * generated too (as Cloud Tasks does: a create naming one is ALREADY_EXISTS, a get says it
   * existed recently). At most MAX_TASK_TOMBSTONES are kept; past that the oldest go early.
   */
  #tombstone(task: Task): number | undefined {
    if (this.#options.taskTombstoneMs <= 0) return undefined;
    const until = this.#now() + this.#options.taskTombstoneMs;
    const tombstones = this.#taskTombstones;
    tombstones.delete(task.name);
    tombstones.set(task.name, until);
    if (tombstones.size > MAX_TASK_TOMBSTONES) tombstones.delete(tombstones.keys().next().value!);
    return until;
  }

  #pruneTombstones(): void {
    const now = this.#now();
    for (const [name, at] of this.#queueDeletedAt) {
      if (at + CLOUD_QUEUE_TOMBSTONE_MS > now) break;
      this.#queueDeletedAt.delete(name);
    }
    for (const map of [this.#taskTombstones, this.#queueTombstones]) {
      for (const [name, until] of map) {
        if (until > now) break;
        map.delete(name);
      }
    }
  }

  // ── Lookups and records ─────────────────────────────────────────────────────────────────

  #now(): number {
    return this.#ctx.clock.now();
  }

  #queue(nameValue: unknown): Queue {
    const name = String(nameValue ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const queue = this.#queues.get(name);
    if (!queue) throw notFound(MSG_QUEUE_MISSING);
    return queue;
  }

  #task(nameValue: unknown): Task {
    const name = String(nameValue ?? '');
    const split = splitTaskName(name);
    if (!split || !parseQueueName(split.queue) || !isTaskId(split.id)) throw invalidArgument(MSG_TASK_NAME);
    const task = this.#queues.get(split.queue)?.tasks.get(split.id);
    if (task) return task;
    this.#pruneTombstones();
    throw notFound(this.#taskTombstones.has(name) ? MSG_TASK_GONE : MSG_NOT_FOUND);
  }

  #addQueue(json: QueueJson): Queue {
    const queue: Queue = {
      json,
      id: parseQueueName(json.name)!.id,
      tasks: new Map(),
      heap: new MinHeap(),
      bucket: new TokenBucket(json.maxDispatchesPerSecond, burstFor(json.maxDispatchesPerSecond), this.#now()),
      inFlight: 0,
      responses: [],
    };
    this.#queues.set(json.name, queue);
    this.#queueTombstones.delete(json.name);
    return queue;
  }

  #taskFromProto(queue: Queue, id: string, named: boolean, given: ProtoObject, now: number): Task {
    if (given.appEngineHttpRequest) {
      throw unimplemented('App Engine tasks are not emulated; use an httpRequest target.');
    }
    const http: ProtoObject | undefined = given.httpRequest;
    if (!http) throw invalidArgument('Task.httpRequest is required.');
    const { size, ...target } = parseHttpTarget(http, 'HttpRequest', 'url');
    target.headers['User-Agent'] = 'Google-Cloud-Tasks'; // stored with the task, as the real service does

    const deadline = durationToMs(given.dispatchDeadline);
    if (deadline !== undefined && deadline !== 0 && (deadline < MIN_DEADLINE_MS || deadline > MAX_DEADLINE_MS)) {
      throw invalidArgument('Task.dispatchDeadline must be between [15s, 30m].');
    }
    const requested = timestampToMs(given.scheduleTime);
    if (requested !== undefined && requested > now + MAX_SCHEDULE_AHEAD_MS) {
      throw invalidArgument(
        `The Task.scheduleTime, ${rfc3339InZone(requested, 'America/Los_Angeles')}, is too far in the future. Schedule time must be no more than 720h in the future.`,
      );
    }
    if (size > MAX_TASK_BYTES) throw invalidArgument('Task size too large');

    return {
      name: `${queue.json.name}/tasks/${id}`,
      id,
      named,
      queue,
      ...target,
      // Unset or in the past means now (task.proto schedule_time).
      scheduleTime: requested === undefined || requested < now ? now : requested,
      createTime: Math.floor(now / 1000) * 1000,
      dispatchDeadlineMs: deadline || DEFAULT_DEADLINE_MS,
      dispatchCount: 0,
      responseCount: 0,
      executionCount: 0,
      inFlight: 0,
      heapSeq: -1,
    };
  }

  // ── Persistence ─────────────────────────────────────────────────────────────────────────

  capture(): Pick<PersistedState, 'queues' | 'tasks' | 'queueTombstones' | 'taskTombstones'> {
    const queues: QueueJson[] = [];
    const tasks: TaskJson[] = [];
    for (const queue of this.#queues.values()) {
      queues.push(queue.json);
      for (const task of queue.tasks.values()) tasks.push(taskJson(task));
    }
    return {
      queues,
      tasks,
      queueTombstones: [...this.#queueTombstones],
      taskTombstones: [...this.#taskTombstones],
    };
  }

  /** Rebuilds the state a data directory held; attempts that were in flight at a crash simply run again. */
  restore(state: PersistedState): void {
    for (const json of state.queues as QueueJson[]) this.#addQueue(json);
    for (const json of state.tasks as TaskJson[]) {
      const split = splitTaskName(json.name);
      const queue = split && this.#queues.get(split.queue);
      if (!split || !queue) continue;
      const { body, ...rest } = json;
      const task: Task = {
        ...rest,
        id: split.id,
        body: body ? Buffer.from(body, 'base64') : undefined,
        queue,
        inFlight: 0,
        heapSeq: -1,
      };
      queue.tasks.set(split.id, task);
      this.#schedule(task);
    }
    const byExpiry = (a: [string, number], b: [string, number]) => a[1] - b[1];
    for (const [name, until] of [...state.queueTombstones].sort(byExpiry)) this.#queueTombstones.set(name, until);
    for (const [name, until] of [...state.taskTombstones].sort(byExpiry)) this.#taskTombstones.set(name, until);
  }
}

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────

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

/** Keeps only the responses of the last minute (executedLastMinuteCount). */
function pruneResponses(queue: Queue, now: number): void {
  let drop = 0;
  while (drop < queue.responses.length && queue.responses[drop]! <= now - 60_000) drop += 1;
  if (drop > 0) queue.responses.splice(0, drop);
}

function queueNameError(): ApiError {
  return invalidArgument(MSG_QUEUE_NAME, [help('Definition of queue name', HELP_QUEUE_NAME)]);
}

function deletedRecord(name: string, until: number | undefined): JournalRecord {
  return until === undefined ? { t: 'task-deleted', name } : { t: 'task-deleted', name, until };
}

function parseStateFilter(filter: unknown): QueueState | undefined {
  const text = String(filter ?? '').trim();
  if (text === '') return undefined;
  const m = /^state\s*[:=]\s*(RUNNING|PAUSED|DISABLED)$/i.exec(text);
  if (!m)
    throw invalidArgument(
      `Unsupported filter "${text}": the emulator understands only "state: RUNNING|PAUSED|DISABLED".`,
    );
  return m[1]!.toUpperCase() as QueueState;
}

/**
 * max_burst_size is output only: Cloud Tasks picks it from the rate. It reports 100 for the default
 * 500/s; the emulator keeps that ratio (a fifth of a second of dispatches, at least 1).
 */
export function burstFor(rate: number): number {
  return Math.max(1, Math.min(100, Math.ceil(rate / 5)));
}

// Random bytes drawn in blocks: one crypto call per 1024 generated IDs, not one per task.
let idPool = Buffer.alloc(0);
let idOffset = 0;

function generateTaskId(): string {
  if (idOffset + 8 > idPool.length) {
    idPool = randomBytes(8 * 1024);
    idOffset = 0;
  }
  const id = idPool.readBigUInt64BE(idOffset);
  idOffset += 8;
  // The service generates long decimal IDs; 19–20 digits from 64 random bits look the same.
  return id.toString();
}

function taskJson(task: Task): TaskJson {
  const { id: _id, body, queue: _queue, inFlight: _inFlight, heapSeq: _heapSeq, ...rest } = task;
  return body ? { ...rest, body: body.toString('base64') } : rest;
}

function renderTask(task: Task, full: boolean): ProtoObject {
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

function renderQueue(queue: Queue): ProtoObject {
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

/** A queue's settings from a protobuf Queue: zero means "the default" (proto3 cannot tell unset from 0). */
function queueFromProto(name: string, given: ProtoObject, previous: QueueJson | undefined): QueueJson {
  const rate: ProtoObject = given.rateLimits ?? {};
  const retry: ProtoObject = given.retryConfig ?? {};
  const maxDispatchesPerSecond = Number(rate.maxDispatchesPerSecond ?? 0);
  if (maxDispatchesPerSecond < 0) throw invalidArgument('RateLimits.maxDispatchesPerSecond cannot be negative.');
  if (maxDispatchesPerSecond > MAX_RATE) {
    throw invalidArgument(`RateLimits.maxDispatchesPerSecond must be less than or equal to ${MAX_RATE}.`);
  }
  const maxConcurrentDispatches = Number(rate.maxConcurrentDispatches ?? 0);
  if (maxConcurrentDispatches < 0) throw invalidArgument('RateLimits.maxConcurrentDispatches cannot be negative.');
  if (maxConcurrentDispatches > MAX_CONCURRENCY) {
    throw invalidArgument(`RateLimits.maxConcurrentDispatches must be less than or equal to ${MAX_CONCURRENCY}.`);
  }
  const maxAttempts = Number(retry.maxAttempts ?? 0);
  if (maxAttempts < -1) throw invalidArgument('RetryConfig.maxAttempts must be greater or equal to -1.');
  const maxDoublings = Number(retry.maxDoublings ?? 0);
  if (maxDoublings < 0) throw invalidArgument('RetryConfig.maxDoublings cannot be negative.');
  const minBackoffMs = durationToMs(retry.minBackoff) ?? 0;
  if (minBackoffMs < 0) throw invalidArgument('RetryConfig.minBackoff cannot be negative.');
  const maxBackoffMs = durationToMs(retry.maxBackoff) ?? 0;
  if (maxBackoffMs < 0) throw invalidArgument('RetryConfig.maxBackoff cannot be negative.');
  const maxRetryDurationMs = durationToMs(retry.maxRetryDuration) ?? 0;
  if (maxRetryDurationMs < 0) throw invalidArgument('RetryConfig.maxRetryDuration cannot be negative.');
  const config: RetryConfig = {
    maxAttempts: maxAttempts || DEFAULT_MAX_ATTEMPTS,
    // Truncated to seconds (queue.proto).
    maxRetryDurationMs: Math.floor(maxRetryDurationMs / 1000) * 1000,
    minBackoffMs: minBackoffMs || DEFAULT_MIN_BACKOFF_MS,
    maxBackoffMs: maxBackoffMs || DEFAULT_MAX_BACKOFF_MS,
    maxDoublings: maxDoublings || DEFAULT_MAX_DOUBLINGS,
  };
  if (config.minBackoffMs > config.maxBackoffMs) {
    throw invalidArgument('RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff.');
  }
  const json: QueueJson = {
    name,
    state: previous?.state ?? 'RUNNING',
    maxDispatchesPerSecond: maxDispatchesPerSecond || DEFAULT_RATE,
    maxConcurrentDispatches: maxConcurrentDispatches || DEFAULT_CONCURRENCY,
    retry: config,
  };
  if (previous?.purgeTime !== undefined) json.purgeTime = previous.purgeTime;
  if (previous?.iamPolicy) json.iamPolicy = previous.iamPolicy;
  if (given.stackdriverLoggingConfig) json.stackdriverLoggingConfig = given.stackdriverLoggingConfig;
  if (given.appEngineRoutingOverride) json.appEngineRoutingOverride = given.appEngineRoutingOverride;
  return json;
}

const QUEUE_MASK: MaskRules = {
  allowed: new Set([
    'rateLimits',
    'rateLimits.maxDispatchesPerSecond',
    'rateLimits.maxBurstSize',
    'rateLimits.maxConcurrentDispatches',
    'retryConfig',
    'retryConfig.maxAttempts',
    'retryConfig.maxRetryDuration',
    'retryConfig.minBackoff',
    'retryConfig.maxBackoff',
    'retryConfig.maxDoublings',
    'stackdriverLoggingConfig',
    'stackdriverLoggingConfig.samplingRatio',
    'appEngineRoutingOverride',
  ]),
  ignored: new Set(['name', 'state', 'purgeTime']),
};

/**
 * Applies an update to a queue rendered as protobuf: the masked fields come from `given`; an empty
 * mask replaces every field (cloudtasks.proto UpdateQueueRequest.update_mask).
 */
function updateQueueFields(current: ProtoObject, given: ProtoObject, paths: string[]): ProtoObject {
  if (paths.length === 0) {
    return {
      rateLimits: given.rateLimits,
      retryConfig: given.retryConfig,
      stackdriverLoggingConfig: given.stackdriverLoggingConfig,
      appEngineRoutingOverride: given.appEngineRoutingOverride,
    };
  }
  return applyMask(current, given, paths, QUEUE_MASK);
}

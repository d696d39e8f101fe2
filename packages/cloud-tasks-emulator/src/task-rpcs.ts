// Cloud Tasks' task RPCs: list, get, create (with its validation and the generated names), delete
// and run. Scheduling and attempts belong to the dispatcher.
import { randomBytes } from 'node:crypto';
import { alreadyExists, help, invalidArgument, notFound, unimplemented } from './errors.ts';
import { parseHttpTarget } from './http-target.ts';
import { isTaskId, parseQueueName, splitTaskName } from './names.ts';
import type { ProtoObject } from './protos.ts';
import { paginate } from './requests.ts';
import type { Dispatcher } from './task-dispatch.ts';
import { MSG_QUEUE_MISSING, MSG_TASK_NAME, type Queue, queueNameError, type Task, taskJson } from './tasks-model.ts';
import { renderTask } from './tasks-render.ts';
import type { TasksStore } from './tasks-store.ts';
import { durationToMs, rfc3339InZone, timestampToMs } from './time.ts';

// Messages recorded from the real service; conformance/cases/ holds each with where it was recorded.
const MSG_EXISTS = 'Requested entity already exists';
const MSG_TASK_TOO_RECENT =
  'The task cannot be created because a task with this name existed too recently. For more information about task de-duplication see https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks/create#body.request_body.FIELDS.task.';
// The link the real service attaches (google.rpc.Help) to its task ID errors.
const HELP_TASK_NAME =
  'https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.name';

// Defaults and limits (task.proto and Cloud Tasks' quotas page; README, "What is emulated").
const DEFAULT_DEADLINE_MS = 10 * 60_000;
const MIN_DEADLINE_MS = 15_000;
const MAX_DEADLINE_MS = 30 * 60_000;
const MAX_SCHEDULE_AHEAD_MS = 720 * 3_600_000;
const MAX_TASK_BYTES = 1024 * 1024;
const MAX_TASK_PAGE = 1000;

export class TaskRpcs {
  readonly #store: TasksStore;
  readonly #dispatcher: Dispatcher;

  constructor(store: TasksStore, dispatcher: Dispatcher) {
    this.#store = store;
    this.#dispatcher = dispatcher;
  }

  listTasks(request: ProtoObject): ProtoObject {
    const queue = this.#store.queue(request.parent);
    const full = request.responseView === 'FULL';
    const ids = [...queue.tasks.keys()].sort();
    const { page, next } = paginate(ids, request.pageSize, request.pageToken, MAX_TASK_PAGE);
    return { tasks: page.map((id) => renderTask(queue.tasks.get(id)!, full)), nextPageToken: next };
  }

  getTask(request: ProtoObject): ProtoObject {
    return renderTask(this.#store.task(request.name), request.responseView === 'FULL');
  }

  async createTask(request: ProtoObject): Promise<ProtoObject> {
    const ctx = this.#store.ctx;
    const parent = String(request.parent ?? '');
    // A stored queue's name is known to be valid: the pattern is only needed for an unknown one.
    const queue = this.#store.queues.get(parent);
    if (!queue && !parseQueueName(parent)) throw queueNameError();
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
    if (!queue) throw notFound(MSG_QUEUE_MISSING);
    const now = this.#store.now();
    const task = taskFromProto(queue, id, named, given, now);
    const name = task.name;
    if (named) {
      if (queue.tasks.has(id)) throw alreadyExists(MSG_EXISTS);
      this.#store.pruneTombstones();
      if (this.#store.tombstones.hasTask(name)) throw alreadyExists(MSG_TASK_TOO_RECENT);
    }
    queue.tasks.set(id, task);
    this.#dispatcher.schedule(task);
    // Acknowledged only once durable: a killed emulator loses no task it said it accepted.
    if (ctx.persistent) await ctx.journal.append({ t: 'task', task: taskJson(task) });
    if (ctx.events.has('task:created')) {
      ctx.events.emit('task:created', { task: name, queue: parent, scheduleTime: task.scheduleTime });
    }
    ctx.wake();
    return renderTask(task, request.responseView === 'FULL');
  }

  /** Works while the task is scheduled or in flight; a finished task is NOT_FOUND. */
  async deleteTask(request: ProtoObject): Promise<ProtoObject> {
    const task = this.#store.task(request.name);
    const saved = this.#store.removeTask(task, 'deleted');
    if (saved) await saved;
    return {};
  }

  /** Dispatches now, whatever the queue's state, rate limits or the task's schedule (cloudtasks.proto RunTask). */
  runTask(request: ProtoObject): ProtoObject {
    const task = this.#store.task(request.name);
    this.#dispatcher.startAttempt(task, this.#store.now(), true);
    return renderTask(task, request.responseView === 'FULL');
  }
}

/** A task from a protobuf Task, validated as the real service does (target, deadline, schedule, size). */
function taskFromProto(queue: Queue, id: string, named: boolean, given: ProtoObject, now: number): Task {
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

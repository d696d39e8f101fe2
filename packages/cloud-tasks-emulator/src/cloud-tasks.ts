// Cloud Tasks v2 (and the v2beta3 queue views) over one state, as the gRPC and REST servers call
// it: RPCs take and return protobuf plain objects, the same from either transport. This file only
// wires the parts together:
// - tasks-model.ts: queues and tasks as stored and as held live, the messages they share;
// - tasks-store.ts: the queues, lookups by name, and how a task leaves;
// - tombstones.ts: how long a deleted queue's or finished task's name stays blocked;
// - queue-config.ts: rate limits and retry configuration from protobuf, with their validation;
// - queue-rpcs.ts and task-rpcs.ts: the RPCs;
// - task-dispatch.ts: the scheduling loop (token buckets, concurrency caps, attempts, backoff);
// - tasks-render.ts: Task and Queue as protobuf, read masks and v2beta3 stats.
import type { EmulatorContext } from './context.ts';
import type { PersistedState } from './journal.ts';
import { splitTaskName } from './names.ts';
import type { ProtoObject } from './protos.ts';
import { QueueRpcs } from './queue-rpcs.ts';
import { Dispatcher } from './task-dispatch.ts';
import { TaskRpcs } from './task-rpcs.ts';
import { type QueueJson, type TaskJson, taskFromJson, taskJson } from './tasks-model.ts';
import { TasksStore } from './tasks-store.ts';
import type { TombstoneOptions } from './tombstones.ts';

type Handlers = Record<string, (request: ProtoObject) => ProtoObject | Promise<ProtoObject>>;

export class CloudTasksService {
  readonly #store: TasksStore;
  readonly #dispatcher: Dispatcher;
  readonly #queues: QueueRpcs;
  readonly #tasks: TaskRpcs;

  constructor(ctx: EmulatorContext, options: TombstoneOptions) {
    this.#store = new TasksStore(ctx, options);
    this.#dispatcher = new Dispatcher(this.#store);
    this.#queues = new QueueRpcs(this.#store);
    this.#tasks = new TaskRpcs(this.#store, this.#dispatcher);
  }

  /** The RPCs, by method name in cloudtasks.proto. */
  handlers(): Handlers {
    const queues = this.#queues;
    const tasks = this.#tasks;
    return {
      ListQueues: (r) => queues.listQueues(r),
      GetQueue: (r) => queues.getQueue(r),
      CreateQueue: (r) => queues.createQueue(r),
      UpdateQueue: (r) => queues.updateQueue(r),
      DeleteQueue: (r) => queues.deleteQueue(r),
      PurgeQueue: (r) => queues.purgeQueue(r),
      PauseQueue: (r) => queues.setQueueState(r, 'PAUSED'),
      ResumeQueue: (r) => queues.setQueueState(r, 'RUNNING'),
      GetIamPolicy: (r) => queues.getIamPolicy(r),
      SetIamPolicy: (r) => queues.setIamPolicy(r),
      TestIamPermissions: (r) => queues.testIamPermissions(r),
      ListTasks: (r) => tasks.listTasks(r),
      GetTask: (r) => tasks.getTask(r),
      CreateTask: (r) => tasks.createTask(r),
      DeleteTask: (r) => tasks.deleteTask(r),
      RunTask: (r) => tasks.runTask(r),
    };
  }

  /**
   * Cloud Tasks v2beta3 over the same queues: what the dashboard needs from it (GetQueue and
   * ListQueues with the stats a read mask asks for), and the queue actions, which are v2's.
   */
  handlersV2beta3(): Handlers {
    const queues = this.#queues;
    return {
      ListQueues: (r) => queues.listQueuesV2beta3(r),
      GetQueue: (r) => queues.getQueueV2beta3(r),
      PurgeQueue: (r) => queues.purgeQueue(r),
      PauseQueue: (r) => queues.setQueueState(r, 'PAUSED'),
      ResumeQueue: (r) => queues.setQueueState(r, 'RUNNING'),
      DeleteQueue: (r) => queues.deleteQueue(r),
    };
  }

  /** The queues `--queue` names, created at start unless they exist (see QueueRpcs). */
  createQueuesAtStart(names: readonly string[]): Promise<void> {
    return this.#queues.createQueuesAtStart(names);
  }

  /** Starts every attempt due at `now` (see Dispatcher.pump). */
  pump(now: number, seen?: Set<object>): void {
    this.#dispatcher.pump(now, seen);
  }

  /** When pump() next has something to do (see Dispatcher.nextWakeAt). */
  nextWakeAt(now: number): number | undefined {
    return this.#dispatcher.nextWakeAt(now);
  }

  capture(): Pick<PersistedState, 'queues' | 'tasks' | 'queueTombstones' | 'taskTombstones'> {
    const queues: QueueJson[] = [];
    const tasks: TaskJson[] = [];
    for (const queue of this.#store.queues.values()) {
      queues.push(queue.json);
      for (const task of queue.tasks.values()) tasks.push(taskJson(task));
    }
    return { queues, tasks, ...this.#store.tombstones.capture() };
  }

  /** Rebuilds the state a data directory held; attempts that were in flight at a crash simply run again. */
  restore(state: PersistedState): void {
    for (const json of state.queues as QueueJson[]) this.#store.addQueue(json);
    for (const json of state.tasks as TaskJson[]) {
      const split = splitTaskName(json.name);
      const queue = split && this.#store.queues.get(split.queue);
      if (!split || !queue) continue;
      const task = taskFromJson(json, split.id, queue);
      queue.tasks.set(split.id, task);
      this.#dispatcher.schedule(task);
    }
    this.#store.tombstones.restore(state);
  }
}

// The Cloud Tasks state the queue RPCs, the task RPCs and the dispatcher share: the queues with
// their tasks, the name tombstones, lookups by name with the real service's errors, and the one
// way a task leaves (its name tombstoned, the removal journaled).
import type { EmulatorContext } from './context.ts';
import { invalidArgument, notFound } from './errors.ts';
import { MinHeap } from './heap.ts';
import type { JournalRecord } from './journal.ts';
import { isTaskId, parseQueueName, splitTaskName } from './names.ts';
import {
  burstFor,
  MSG_NOT_FOUND,
  MSG_QUEUE_MISSING,
  MSG_TASK_NAME,
  type Queue,
  type QueueJson,
  queueNameError,
  type Task,
} from './tasks-model.ts';
import { TokenBucket } from './token-bucket.ts';
import { type TombstoneOptions, Tombstones } from './tombstones.ts';

const MSG_TASK_GONE =
  'The task no longer exists, though a task with this name existed recently. The task either successfully completed or was deleted.';

export class TasksStore {
  readonly ctx: EmulatorContext;
  readonly queues = new Map<string, Queue>();
  readonly tombstones: Tombstones;

  constructor(ctx: EmulatorContext, options: TombstoneOptions) {
    this.ctx = ctx;
    this.tombstones = new Tombstones(options);
  }

  now(): number {
    return this.ctx.clock.now();
  }

  pruneTombstones(): void {
    this.tombstones.prune(this.now());
  }

  /** The queue a request names: INVALID_ARGUMENT for a bad name, NOT_FOUND for a missing queue. */
  queue(nameValue: unknown): Queue {
    const name = String(nameValue ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const queue = this.queues.get(name);
    if (!queue) throw notFound(MSG_QUEUE_MISSING);
    return queue;
  }

  /** The task a request names; a missing one's NOT_FOUND says whether it existed recently. */
  task(nameValue: unknown): Task {
    const name = String(nameValue ?? '');
    const split = splitTaskName(name);
    if (!split || !parseQueueName(split.queue) || !isTaskId(split.id)) throw invalidArgument(MSG_TASK_NAME);
    const task = this.queues.get(split.queue)?.tasks.get(split.id);
    if (task) return task;
    this.pruneTombstones();
    throw notFound(this.tombstones.hasTask(name) ? MSG_TASK_GONE : MSG_NOT_FOUND);
  }

  addQueue(json: QueueJson): Queue {
    const queue: Queue = {
      json,
      id: parseQueueName(json.name)!.id,
      tasks: new Map(),
      heap: new MinHeap(),
      bucket: new TokenBucket(json.maxDispatchesPerSecond, burstFor(json.maxDispatchesPerSecond), this.now()),
      inFlight: 0,
      responses: [],
    };
    this.queues.set(json.name, queue);
    this.tombstones.queueCreated(json.name);
    return queue;
  }

  /** Succeeded or failed for good: the task goes, its name is tombstoned. */
  dropTask(task: Task): void {
    task.queue.tasks.delete(task.id);
    const until = this.tombstones.taskGone(task.name, this.now());
    if (this.ctx.persistent) this.ctx.journal.write(deletedRecord(task.name, until));
  }

  /** Deleted or purged by a request: as dropTask, and the removal is announced. */
  removeTask(task: Task, reason: 'deleted' | 'purged'): Promise<void> | undefined {
    task.queue.tasks.delete(task.id);
    const until = this.tombstones.taskGone(task.name, this.now());
    this.ctx.events.emit('task:deleted', { task: task.name, queue: task.queue.json.name, reason });
    return this.ctx.journal.append(deletedRecord(task.name, until));
  }
}

function deletedRecord(name: string, until: number | undefined): JournalRecord {
  return until === undefined ? { t: 'task-deleted', name } : { t: 'task-deleted', name, until };
}

// Cloud Tasks' queue RPCs: list, get, create, update (an upsert), delete, purge, pause and resume,
// the IAM policy calls, the v2beta3 views, and the queues created at start (`--queue`).
import { randomBytes } from 'node:crypto';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.ts';
import { maskPaths } from './field-mask.ts';
import { parseQueueName } from './names.ts';
import type { ProtoObject } from './protos.ts';
import { parseStateFilter, queueFromProto, updateQueueFields } from './queue-config.ts';
import { checkParent, paginate } from './requests.ts';
import { burstFor, MSG_NOT_FOUND, MSG_QUEUE_NAME, type Queue, type QueueState, queueNameError } from './tasks-model.ts';
import { renderQueue, renderQueueV2beta3 } from './tasks-render.ts';
import type { TasksStore } from './tasks-store.ts';

// Messages recorded from the real service; conformance/cases/ holds each with where it was recorded.
const MSG_QUEUE_EXISTS = 'Queue already exists';
const MSG_QUEUE_TOO_RECENT = 'The queue cannot be created because a queue with this name existed too recently.';
const MAX_QUEUE_PAGE = 9800;

export class QueueRpcs {
  readonly #store: TasksStore;

  constructor(store: TasksStore) {
    this.#store = store;
  }

  listQueues(request: ProtoObject): ProtoObject {
    const { page, next } = this.#listQueueNames(request);
    return { queues: page.map((n) => renderQueue(this.#store.queues.get(n)!)), nextPageToken: next };
  }

  /** v2beta3 ListQueues: each queue with the fields (and stats) its read mask asks for. */
  listQueuesV2beta3(request: ProtoObject): ProtoObject {
    const { page, next } = this.#listQueueNames(request);
    const now = this.#store.now();
    const queues = page.map((n) => renderQueueV2beta3(this.#store.queues.get(n)!, request.readMask, now));
    return { queues, nextPageToken: next };
  }

  #listQueueNames(request: ProtoObject): { page: string[]; next: string } {
    const queues = this.#store.queues;
    const parent = checkParent(request.parent);
    const filter = parseStateFilter(request.filter);
    const names = [...queues.keys()].filter((n) => n.startsWith(`${parent}/queues/`)).sort();
    const selected = filter ? names.filter((n) => queues.get(n)!.json.state === filter) : names;
    return paginate(selected, request.pageSize, request.pageToken, MAX_QUEUE_PAGE);
  }

  getQueue(request: ProtoObject): ProtoObject {
    return renderQueue(this.#store.queue(request.name));
  }

  getQueueV2beta3(request: ProtoObject): ProtoObject {
    return renderQueueV2beta3(this.#store.queue(request.name), request.readMask, this.#store.now());
  }

  async createQueue(request: ProtoObject): Promise<ProtoObject> {
    const store = this.#store;
    const parent = checkParent(request.parent);
    const given: ProtoObject = request.queue ?? {};
    const name = String(given.name ?? '');
    const parsed = parseQueueName(name);
    if (!parsed) throw queueNameError();
    if (parsed.parent !== parent) throw invalidArgument(`${name} must begin with ${parent}.`);
    store.pruneTombstones();
    if (store.queues.has(name)) throw alreadyExists(MSG_QUEUE_EXISTS);
    if (store.tombstones.hasQueue(name)) throw failedPrecondition(MSG_QUEUE_TOO_RECENT);
    const json = queueFromProto(name, given, undefined);
    store.tombstones.warnIfReused(name, store.now(), store.ctx.log);
    const queue = store.addQueue(json);
    await store.ctx.journal.append({ t: 'queue', queue: json });
    store.ctx.events.emit('queue:created', { queue: name });
    return renderQueue(queue);
  }

  /** An upsert (cloudtasks.proto UpdateQueue); never changes the state. */
  async updateQueue(request: ProtoObject): Promise<ProtoObject> {
    const store = this.#store;
    const given: ProtoObject = request.queue ?? {};
    const name = String(given.name ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const existing = store.queues.get(name);
    if (!existing) {
      store.pruneTombstones();
      if (store.tombstones.hasQueue(name)) throw failedPrecondition(MSG_QUEUE_TOO_RECENT);
      store.tombstones.warnIfReused(name, store.now(), store.ctx.log);
    }
    const paths = maskPaths(request.updateMask);
    const merged = updateQueueFields(existing ? renderQueue(existing) : {}, given, paths);
    const json = queueFromProto(name, merged, existing?.json);
    let queue: Queue;
    if (existing) {
      existing.json = json;
      existing.bucket.configure(json.maxDispatchesPerSecond, burstFor(json.maxDispatchesPerSecond), store.now());
      queue = existing;
    } else {
      queue = store.addQueue(json);
    }
    await store.ctx.journal.append({ t: 'queue', queue: json });
    store.ctx.events.emit(existing ? 'queue:updated' : 'queue:created', { queue: name });
    store.ctx.wake();
    return renderQueue(queue);
  }

  async deleteQueue(request: ProtoObject): Promise<ProtoObject> {
    const store = this.#store;
    const name = String(request.name ?? '');
    if (!parseQueueName(name)) throw queueNameError();
    const queue = store.queues.get(name);
    if (!queue) throw notFound(MSG_NOT_FOUND);
    store.queues.delete(name);
    const until = store.tombstones.queueDeleted(name, store.now());
    for (const task of queue.tasks.values()) {
      store.ctx.events.emit('task:deleted', { task: task.name, queue: name, reason: 'queue-deleted' });
    }
    queue.tasks.clear();
    queue.heap.clear();
    await store.ctx.journal.append({ t: 'queue-deleted', name, until });
    store.ctx.events.emit('queue:deleted', { queue: name });
    return {};
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
      if (this.#store.queues.has(name)) continue;
      try {
        await this.createQueue({ parent: parsed.parent, queue: { name } });
      } catch (err) {
        this.#store.ctx.log('warn', `queue ${name} not created at start: ${(err as Error).message}`, { queue: name });
      }
    }
  }

  /** Deletes every task created before now and sets purgeTime (cloudtasks.proto PurgeQueue). */
  async purgeQueue(request: ProtoObject): Promise<ProtoObject> {
    const store = this.#store;
    const queue = store.queue(request.name);
    const now = store.now();
    const records: Promise<void>[] = [];
    for (const task of [...queue.tasks.values()]) {
      if (task.createTime > now) continue;
      const done = store.removeTask(task, 'purged');
      if (done) records.push(done);
    }
    queue.json.purgeTime = now;
    const saved = store.ctx.journal.append({ t: 'queue', queue: queue.json });
    await Promise.all(saved ? [...records, saved] : records);
    store.ctx.events.emit('queue:purged', { queue: queue.json.name, purgeTime: now });
    return renderQueue(queue);
  }

  async setQueueState(request: ProtoObject, state: QueueState): Promise<ProtoObject> {
    const store = this.#store;
    const queue = store.queue(request.name);
    queue.json.state = state;
    await store.ctx.journal.append({ t: 'queue', queue: queue.json });
    store.ctx.events.emit(state === 'PAUSED' ? 'queue:paused' : 'queue:resumed', { queue: queue.json.name });
    if (state === 'RUNNING') store.ctx.wake();
    return renderQueue(queue);
  }

  getIamPolicy(request: ProtoObject): ProtoObject {
    return this.#store.queue(request.resource).json.iamPolicy ?? {};
  }

  async setIamPolicy(request: ProtoObject): Promise<ProtoObject> {
    const queue = this.#store.queue(request.resource);
    // Stored as base64 so the journal's JSON keeps it; protobufjs takes base64 for bytes fields.
    const policy: ProtoObject = { ...(request.policy ?? {}), etag: randomBytes(8).toString('base64') };
    queue.json.iamPolicy = policy;
    await this.#store.ctx.journal.append({ t: 'queue', queue: queue.json });
    return policy;
  }

  /** Nothing is enforced locally, so every permission asked about is granted. */
  testIamPermissions(request: ProtoObject): ProtoObject {
    this.#store.queue(request.resource);
    return { permissions: request.permissions ?? [] };
  }
}

// Cloud Tasks' name reuse windows: a finished or deleted task's name (given or generated) and a
// deleted queue's name stay blocked for a while. Also remembers when each queue was deleted, to
// warn when a name is reused that Cloud Tasks itself would refuse.
import type { LogFn } from './context.ts';
import type { PersistedState } from './journal.ts';

/** How long Cloud Tasks blocks a deleted queue's name (cloudtasks.proto DeleteQueue). */
export const CLOUD_QUEUE_TOMBSTONE_MS = 7 * 24 * 3_600_000;
/**
 * Task names blocked at once, at most: about 150 bytes each, so ~150 MB at the cap, reached only
 * by finishing over 275 tasks a second for a whole hour (the default window). A Map cannot hold
 * more than 2^24 entries anyway.
 */
const MAX_TASK_TOMBSTONES = 1_000_000;

export interface TombstoneOptions {
  /** How long a finished or deleted task's name stays blocked. */
  taskTombstoneMs: number;
  /** How long a deleted queue's name stays blocked. */
  queueTombstoneMs: number;
}

export class Tombstones {
  readonly #options: TombstoneOptions;
  /** name → blocked until; insertion order is expiry order, since the window is one constant. */
  readonly #tasks = new Map<string, number>();
  readonly #queues = new Map<string, number>();
  /** name → when deleted, to warn about a reuse Cloud Tasks would refuse (memory only). */
  readonly #queueDeletedAt = new Map<string, number>();

  constructor(options: TombstoneOptions) {
    this.#options = options;
  }

  /** Forgets every window that has closed by `now`. */
  prune(now: number): void {
    for (const [name, at] of this.#queueDeletedAt) {
      if (at + CLOUD_QUEUE_TOMBSTONE_MS > now) break;
      this.#queueDeletedAt.delete(name);
    }
    for (const map of [this.#tasks, this.#queues]) {
      for (const [name, until] of map) {
        if (until > now) break;
        map.delete(name);
      }
    }
  }

  /** Whether the queue name is blocked (as of the last prune). */
  hasQueue(name: string): boolean {
    return this.#queues.has(name);
  }

  /** Whether the task name is blocked (as of the last prune). */
  hasTask(name: string): boolean {
    return this.#tasks.has(name);
  }

  /** A queue was deleted: block its name if the window is on; returns until when, for the journal. */
  queueDeleted(name: string, now: number): number {
    this.#queueDeletedAt.delete(name);
    this.#queueDeletedAt.set(name, now);
    const until = now + this.#options.queueTombstoneMs;
    if (this.#options.queueTombstoneMs > 0) this.#queues.set(name, until);
    return until;
  }

  /** A queue of this name exists (again): its name is no longer blocked. */
  queueCreated(name: string): void {
    this.#queues.delete(name);
  }

  /**
   * Every finished or deleted task's name is blocked for the window, the names the emulator
   * generated too (as Cloud Tasks does: a create naming one is ALREADY_EXISTS, a get says it
   * existed recently). At most MAX_TASK_TOMBSTONES are kept; past that the oldest go early.
   * Returns until when, or undefined when the window is off.
   */
  taskGone(name: string, now: number): number | undefined {
    if (this.#options.taskTombstoneMs <= 0) return undefined;
    const until = now + this.#options.taskTombstoneMs;
    const tombstones = this.#tasks;
    tombstones.delete(name);
    tombstones.set(name, until);
    if (tombstones.size > MAX_TASK_TOMBSTONES) tombstones.delete(tombstones.keys().next().value!);
    return until;
  }

  /**
   * Locally a deleted queue's name is free again unless queueTombstoneMs says otherwise; Cloud
   * Tasks refuses it for 7 days, so a script that deletes and recreates a queue is told here what
   * would happen there.
   */
  warnIfReused(name: string, now: number, log: LogFn): void {
    const deletedAt = this.#queueDeletedAt.get(name);
    if (deletedAt === undefined) return;
    this.#queueDeletedAt.delete(name);
    const ago = now - deletedAt;
    if (ago >= CLOUD_QUEUE_TOMBSTONE_MS) return;
    log(
      'warn',
      `queue ${name} is created again ${Math.round(ago / 1000)} s after it was deleted: Cloud Tasks would refuse this with FAILED_PRECONDITION for 7 days (start the emulator with --queue-tombstone 7d to refuse it here too)`,
      { queue: name },
    );
  }

  capture(): Pick<PersistedState, 'queueTombstones' | 'taskTombstones'> {
    return { queueTombstones: [...this.#queues], taskTombstones: [...this.#tasks] };
  }

  restore(state: Pick<PersistedState, 'queueTombstones' | 'taskTombstones'>): void {
    const byExpiry = (a: [string, number], b: [string, number]) => a[1] - b[1];
    for (const [name, until] of [...state.queueTombstones].sort(byExpiry)) this.#queues.set(name, until);
    for (const [name, until] of [...state.taskTombstones].sort(byExpiry)) this.#tasks.set(name, until);
  }
}

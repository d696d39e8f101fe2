// Persistence for a data directory: a snapshot plus an append-only journal of changes. A change
// that must be acknowledged (CreateTask, CreateQueue, …) resolves only once its line is fsynced;
// lines arriving while a sync runs share the next one (group commit). At start the journal is
// replayed onto the snapshot and both are compacted into a new snapshot; a torn last line, left
// by a kill mid-write, belongs to a request that was never acknowledged and is dropped.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import path from 'node:path';

export interface Named {
  name: string;
}

/** Everything that survives a restart; records are the services' own JSON shapes. */
export interface PersistedState<Q extends Named = Named, T extends Named = Named, J extends Named = Named> {
  queues: Q[];
  tasks: T[];
  jobs: J[];
  /** [queue name, blocked until (epoch ms)] */
  queueTombstones: [string, number][];
  /** [task name, blocked until (epoch ms)] */
  taskTombstones: [string, number][];
}

export type JournalRecord =
  | { t: 'queue'; queue: Named }
  | { t: 'queue-deleted'; name: string; until: number }
  | { t: 'task'; task: Named }
  | { t: 'task-deleted'; name: string; until?: number }
  | { t: 'job'; job: Named }
  | { t: 'job-deleted'; name: string };

export interface Journal {
  /** Records a change; the promise (if any) resolves once it is durable. Memory mode returns undefined. */
  append(record: JournalRecord): Promise<void> | undefined;
  /** Records a change nobody waits for (attempt outcomes): durable with the next group commit. */
  write(record: JournalRecord): void;
  /** Flushes what is pending and closes the file. */
  close(): Promise<void>;
}

export const memoryJournal: Journal = {
  append: () => undefined,
  write: () => {},
  close: async () => {},
};

const SNAPSHOT = 'snapshot.json';
const journalFile = (generation: number) => `journal-${generation}.log`;
/** Compact while running once the journal passes this size, so a long-lived emulator restarts fast. */
const COMPACT_AT_BYTES = 64 * 1024 * 1024;

export function emptyState(): PersistedState {
  return { queues: [], tasks: [], jobs: [], queueTombstones: [], taskTombstones: [] };
}

/**
 * Opens `dir`: reads the snapshot, replays the journal, compacts both into a new snapshot, and
 * returns the state with a journal appending to a fresh file. `capture` is how the journal takes
 * a snapshot of the live state when it compacts while running.
 */
export async function openJournal(
  dir: string,
  capture: () => PersistedState,
  onError: (err: unknown) => void,
): Promise<{ state: PersistedState; journal: Journal }> {
  mkdirSync(dir, { recursive: true });
  let generation = 0;
  let base = emptyState();
  const snapshotPath = path.join(dir, SNAPSHOT);
  if (existsSync(snapshotPath)) {
    const parsed = JSON.parse(readFileSync(snapshotPath, 'utf8')) as { generation: number; state: PersistedState };
    generation = parsed.generation;
    base = { ...emptyState(), ...parsed.state };
  }
  const state = replay(base, readJournalLines(path.join(dir, journalFile(generation))));
  const next = generation + 1;
  writeSnapshot(dir, next, state);
  for (const file of readdirSync(dir)) {
    if (/^journal-\d+\.log$/.test(file) && file !== journalFile(next)) rmSync(path.join(dir, file), { force: true });
  }
  const handle = await open(path.join(dir, journalFile(next)), 'a');
  return { state, journal: new FileJournal(dir, next, handle, capture, onError) };
}

function readJournalLines(file: string): JournalRecord[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const records: JournalRecord[] = [];
  let start = 0;
  for (;;) {
    const end = text.indexOf('\n', start);
    if (end < 0) break; // a line without its newline was cut by a crash: never acknowledged
    try {
      records.push(JSON.parse(text.slice(start, end)) as JournalRecord);
    } catch {
      break;
    }
    start = end + 1;
  }
  return records;
}

function replay(base: PersistedState, records: JournalRecord[]): PersistedState {
  const queues = new Map(base.queues.map((q) => [q.name, q]));
  const tasks = new Map(base.tasks.map((t) => [t.name, t]));
  const jobs = new Map(base.jobs.map((j) => [j.name, j]));
  const queueTombstones = new Map(base.queueTombstones);
  const taskTombstones = new Map(base.taskTombstones);
  for (const r of records) {
    switch (r.t) {
      case 'queue':
        queues.set(r.queue.name, r.queue);
        queueTombstones.delete(r.queue.name);
        break;
      case 'queue-deleted': {
        queues.delete(r.name);
        queueTombstones.set(r.name, r.until);
        const prefix = `${r.name}/tasks/`;
        for (const name of tasks.keys()) if (name.startsWith(prefix)) tasks.delete(name);
        break;
      }
      case 'task':
        tasks.set(r.task.name, r.task);
        break;
      case 'task-deleted':
        tasks.delete(r.name);
        if (r.until !== undefined) taskTombstones.set(r.name, r.until);
        break;
      case 'job':
        jobs.set(r.job.name, r.job);
        break;
      case 'job-deleted':
        jobs.delete(r.name);
        break;
    }
  }
  return {
    queues: [...queues.values()],
    tasks: [...tasks.values()],
    jobs: [...jobs.values()],
    queueTombstones: [...queueTombstones],
    taskTombstones: [...taskTombstones],
  };
}

/** Writes the snapshot atomically: a temporary file, fsynced, renamed over the old one, directory fsynced. */
function writeSnapshot(dir: string, generation: number, state: PersistedState): void {
  const tmp = path.join(dir, `${SNAPSHOT}.tmp`);
  writeFileSync(tmp, JSON.stringify({ version: 1, generation, state }));
  const fd = openSync(tmp, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path.join(dir, SNAPSHOT));
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

class FileJournal implements Journal {
  readonly #dir: string;
  #generation: number;
  #handle: FileHandle;
  readonly #capture: () => PersistedState;
  readonly #onError: (err: unknown) => void;
  #pending: string[] = [];
  #waiters: Waiter[] = [];
  #bytes = 0;
  #scheduled = false;
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(
    dir: string,
    generation: number,
    handle: FileHandle,
    capture: () => PersistedState,
    onError: (err: unknown) => void,
  ) {
    this.#dir = dir;
    this.#generation = generation;
    this.#handle = handle;
    this.#capture = capture;
    this.#onError = onError;
  }

  append(record: JournalRecord): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the emulator is closing'));
    return new Promise((resolve, reject) => {
      this.#pending.push(`${JSON.stringify(record)}\n`);
      this.#waiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  write(record: JournalRecord): void {
    if (this.#closed) return;
    this.#pending.push(`${JSON.stringify(record)}\n`);
    this.#schedule();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#flushing;
    await this.#flush();
    await this.#handle.close();
  }

  #schedule(): void {
    if (this.#scheduled || this.#flushing) return;
    this.#scheduled = true;
    // One turn of the event loop gathers every change made by requests handled in it.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = undefined;
        if (this.#pending.length > 0) this.#schedule();
      });
    });
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const lines = this.#pending;
      const waiters = this.#waiters;
      this.#pending = [];
      this.#waiters = [];
      try {
        if (this.#bytes > COMPACT_AT_BYTES) {
          await this.#compact(); // the snapshot already holds these lines' changes
        } else {
          const chunk = lines.join('');
          await this.#handle.write(chunk);
          await this.#handle.datasync();
          this.#bytes += Buffer.byteLength(chunk);
        }
        for (const w of waiters) w.resolve();
      } catch (err) {
        this.#onError(err);
        for (const w of waiters) w.reject(err);
      }
    }
  }

  async #compact(): Promise<void> {
    const next = this.#generation + 1;
    // Captured synchronously, so it holds every change made so far and nothing after.
    writeSnapshot(this.#dir, next, this.#capture());
    const old = this.#handle;
    this.#handle = await open(path.join(this.#dir, journalFile(next)), 'a');
    await old.close();
    rmSync(path.join(this.#dir, journalFile(this.#generation)), { force: true });
    this.#generation = next;
    this.#bytes = 0;
  }
}

// Group commit for the push path's two task_runs statements. Concurrent deliveries of plain tasks
// share one claim statement and one completion statement instead of two commits each: a delivery
// that finds the most statements of its kind allowed in flight (MAX_IN_FLIGHT) waits for one of
// them to end and shares the next. Nothing waits on a timer: with a slot free a delivery is written
// at once, alone, with the single-row statement, so one delivery at a time is exactly as fast as
// without batching; under load the batches grow by themselves with the number of deliveries that
// arrive while the statements run.
//
// Every rule stays per delivery: each row of a batch has its own conflict rule (claim) or fence
// (completion), and the answers are handed back one by one. Two deliveries of one (task, key), or
// two completions of one run, never share a statement: the later one waits for the next, and sees
// what the earlier one wrote, as if they had come one after the other. When a batch statement
// fails (one row breaking a constraint fails the whole statement, and then nothing was written),
// each of its deliveries is written again with its own single-row statement, so one bad row fails
// only its own delivery. Transactional tasks are not batched: their claim belongs to their own
// transaction.
import type { Db } from '../db/db.ts';
import { DatabaseUnavailableError } from '../errors.ts';
import { type ClaimInput, type ClaimResult, type FinishInput, type Settled, taskRuns } from './task-runs.repository.ts';

/** Deliveries per statement at most. */
export const MAX_BATCH = 100;
/** Statements of one kind (claim, completion) in flight at once; the pool has room for both kinds. */
export const MAX_IN_FLIGHT = 2;

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export interface GroupWriterOptions<I, O> {
  /** Items with the same key never share a statement. */
  key: (item: I) => string;
  /** The single-row statement: a batch of one, and the fallback for each item of a failed batch. */
  one: (item: I) => Promise<O>;
  /** The batch statement; throws only when nothing was written. */
  many: (items: readonly I[]) => Promise<Array<Settled<O>>>;
  maxBatch?: number;
  maxInFlight?: number;
}

export interface GroupWriterStats {
  /** Statements for more than one item. */
  batches: number;
  /** Items written by those statements. */
  batchedItems: number;
  /** Items written alone (nothing else was waiting). */
  single: number;
  /** Batch statements that failed and were replaced by one statement per item. */
  fallbacks: number;
}

export class GroupWriter<I, O> {
  readonly stats: GroupWriterStats = { batches: 0, batchedItems: 0, single: 0, fallbacks: 0 };
  readonly #o: Required<GroupWriterOptions<I, O>>;
  readonly #waiting: Array<Waiting<I, O>> = [];
  #inFlight = 0;

  constructor(options: GroupWriterOptions<I, O>) {
    this.#o = {
      ...options,
      maxBatch: options.maxBatch ?? MAX_BATCH,
      maxInFlight: options.maxInFlight ?? MAX_IN_FLIGHT,
    };
  }

  write(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    while (this.#inFlight < this.#o.maxInFlight && this.#waiting.length > 0) {
      const batch = this.#take();
      this.#inFlight++;
      void this.#flush(batch).finally(() => {
        this.#inFlight--;
        this.#kick();
      });
    }
  }

  /** The oldest waiting items, up to maxBatch, at most one per key; the others keep their place. */
  #take(): Array<Waiting<I, O>> {
    const batch: Array<Waiting<I, O>> = [];
    const keys = new Set<string>();
    const left: Array<Waiting<I, O>> = [];
    for (const w of this.#waiting) {
      const key = this.#o.key(w.item);
      if (batch.length < this.#o.maxBatch && !keys.has(key)) {
        keys.add(key);
        batch.push(w);
      } else {
        left.push(w);
      }
    }
    this.#waiting.splice(0, this.#waiting.length, ...left);
    return batch;
  }

  async #flush(batch: Array<Waiting<I, O>>): Promise<void> {
    if (batch.length === 1) {
      this.stats.single++;
      await this.#one(batch[0]!);
      return;
    }
    let settled: Array<Settled<O>>;
    try {
      settled = await this.#o.many(batch.map((w) => w.item));
    } catch (err) {
      if (err instanceof DatabaseUnavailableError) {
        for (const w of batch) w.reject(err);
        return;
      }
      // Nothing was written: each item again on its own, so a bad one fails alone.
      this.stats.fallbacks++;
      await Promise.all(batch.map((w) => this.#one(w)));
      return;
    }
    this.stats.batches++;
    this.stats.batchedItems += batch.length;
    for (const [i, w] of batch.entries()) {
      const s = settled[i]!;
      if (s.ok) w.resolve(s.value);
      else w.reject(s.error);
    }
  }

  async #one(w: Waiting<I, O>): Promise<void> {
    try {
      w.resolve(await this.#o.one(w.item));
    } catch (err) {
      w.reject(err);
    }
  }
}

/** The push path's claim and completion of plain tasks, group-committed on one database. */
export class TaskRunBatcher {
  readonly claims: GroupWriter<ClaimInput, ClaimResult>;
  readonly finishes: GroupWriter<FinishInput, boolean>;

  constructor(db: Db, options: { maxBatch?: number; maxInFlight?: number } = {}) {
    this.claims = new GroupWriter({
      ...options,
      key: (c) => `${c.task}\u0000${c.key}`,
      one: (c) => taskRuns.claimRun(db, c),
      many: (cs) => taskRuns.claimRuns(db, cs),
    });
    this.finishes = new GroupWriter({
      ...options,
      key: (f) => String(f.runId),
      one: (f) => taskRuns.finishAttempt(db, f),
      many: async (fs) => (await taskRuns.finishAttempts(db, fs)).map((value) => ({ ok: true, value })),
    });
  }

  /** taskRuns.claimRun, sharing a statement with concurrent deliveries. */
  claim(input: ClaimInput): Promise<ClaimResult> {
    return this.claims.write(input);
  }

  /** taskRuns.finishAttempt, sharing a statement with concurrent completions. */
  finish(input: FinishInput): Promise<boolean> {
    return this.finishes.write(input);
  }
}

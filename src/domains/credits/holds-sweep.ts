// The sweep of abandoned credits holds. A task that reserves credits (blog.generate_post) settles
// or releases its hold itself, even when its last attempt fails; what it cannot cover is an
// attempt that never returns (the process killed, the handler past its deadline on the last
// attempt). Such a hold would keep the user's credits forever. The sweep releases a hold when
//   - it was opened longer ago than the longest task deadline (no attempt lasts longer), and
//   - the run of the task that opened it is not in progress: not running under a live lease, and
//     not failed-and-waiting for the queue's next attempt (that attempt will settle or release it).
// Releasing is the ordinary release (a 'refund' ledger entry keyed `released:{ref}`), so a hold is
// released once whatever the number of sweeps, and a hold settled or released meanwhile is left
// alone. The owner of the hold's ref tells the user, in the same transaction.
import type { Queryable } from '../../db/db.ts';
import type { AnyTask, Enqueue } from '../../tasks/define-task.ts';
import { DEFAULT_DEADLINE_SECONDS } from '../../tasks/define-task.ts';
import { inTransaction, release } from './credits.service.ts';

/** How the sweep links holds to the task that opens them, and tells that task's user. */
export interface HoldOwner {
  /** Holds whose ref starts with this belong to `task`. */
  readonly refPrefix: string;
  readonly task: string;
  /** The run's idempotency key, from the hold's ref. */
  runKey(ref: string): string;
  /**
   * Tells the user that the hold was released (in the releasing transaction). Given the run's
   * payload as first received; returns false when it could not tell (no usable payload).
   */
  released(input: { payload: unknown; refunded: number; enqueue: Enqueue; tx: Queryable }): Promise<boolean>;
}

/** The longest dispatch deadline of these tasks, in seconds: no attempt of any of them runs longer. */
export function longestTaskDeadlineSeconds(tasks: readonly AnyTask[]): number {
  return Math.max(DEFAULT_DEADLINE_SECONDS, ...tasks.map((t) => t.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS));
}

/** Held holds opened before the cutoff, in ref order after a cursor (few rows: held is a passing state). */
const SELECT_STALE_HOLDS = `
  SELECT ref, account_id, created_at FROM credit_holds
   WHERE state = 'held' AND created_at < $1 AND ref > $2
   ORDER BY ref LIMIT $3`;

/** The run a hold belongs to, and whether it is still in progress at $3. */
const SELECT_OWNER_RUN = `
  SELECT id, status, payload,
         (status = 'failed' OR (status = 'running' AND lease_expires_at > $3)) AS in_progress
    FROM task_runs WHERE task = $1 AND idempotency_key = $2`;

export interface SweepInput {
  /** Holds opened before this are candidates. */
  cutoff: Date;
  now: Date;
  owners: readonly HoldOwner[];
  enqueue: Enqueue;
  /** Holds read per statement. (Default: 200) */
  batchSize?: number;
  signal?: AbortSignal;
  onReleased?: (hold: ReleasedHold) => void;
}

export interface ReleasedHold {
  ref: string;
  accountId: number;
  refunded: number;
  createdAt: Date;
  /** The owner told the user. */
  told: boolean;
}

export interface SweepResult {
  /** Held holds older than the cutoff. */
  examined: number;
  /** Left alone: their task's run is still in progress. */
  inProgress: number;
  released: number;
  credits: number;
}

/** Releases every abandoned hold opened before the cutoff; see the top of this file. */
export async function sweepAbandonedHolds(db: Queryable, input: SweepInput): Promise<SweepResult> {
  const batchSize = input.batchSize ?? 200;
  const result: SweepResult = { examined: 0, inProgress: 0, released: 0, credits: 0 };
  let cursor = '';
  for (;;) {
    if (input.signal?.aborted) break; // the rest waits for the next sweep
    const batch = await db.query<{ ref: string; account_id: number; created_at: Date | string }>(SELECT_STALE_HOLDS, [
      input.cutoff,
      cursor,
      batchSize,
    ]);
    for (const row of batch.rows) {
      result.examined++;
      const hold = { ref: row.ref, accountId: Number(row.account_id), createdAt: new Date(row.created_at) };
      cursor = hold.ref;
      const owner = input.owners.find((o) => hold.ref.startsWith(o.refPrefix));
      const outcome = await inTransaction(db, async (tx) => {
        let payload: unknown;
        if (owner) {
          const run = await tx.query<{ status: string; payload: unknown; in_progress: boolean }>(SELECT_OWNER_RUN, [
            owner.task,
            owner.runKey(hold.ref),
            input.now,
          ]);
          if (run.rows[0]?.in_progress) return 'in-progress' as const;
          payload = run.rows[0]?.payload;
        }
        const released = await release(tx, hold.ref, input.now);
        if (!released.closed) return 'closed' as const; // settled or released since it was read
        const told =
          owner && payload !== undefined && payload !== null
            ? await owner.released({ payload, refunded: released.refunded, enqueue: input.enqueue, tx })
            : false;
        return { refunded: released.refunded, told };
      });
      if (outcome === 'in-progress') result.inProgress++;
      else if (outcome !== 'closed') {
        result.released++;
        result.credits += outcome.refunded;
        input.onReleased?.({ ...hold, ...outcome });
      }
    }
    if (batch.rows.length < batchSize) break;
  }
  return result;
}

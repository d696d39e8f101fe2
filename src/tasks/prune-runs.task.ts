// maintenance.prune_runs (scheduled daily): deletes finished task runs older than the retention
// (TASK_RUN_RETENTION_DAYS), so task_runs stays the size of recent history. Running and failed runs
// are never pruned: they may still be delivered. Unsent outbox rows never are either.
//
// Without long locks: each statement deletes at most `batchSize` rows (oldest first) and commits
// on its own, so no statement holds more than that many row locks, for as long as one small
// delete takes. Rows another transaction holds (a late redelivery re-claiming an old run) are
// skipped (FOR UPDATE SKIP LOCKED) instead of waited for: the push keeps its row, and the prune
// never queues behind a push nor a push behind it. Batches repeat until nothing old is left,
// the time budget is spent, or the handler's deadline nears; what is left waits for the next day.
import { z } from 'zod';
import { defineTask } from './define-task.ts';
import { RUN_ACTIVITY } from './task-runs.repository.ts';

declare module './define-task.ts' {
  interface TaskServices {
    /** Finished runs older than this many days are deleted. */
    taskRunRetentionDays: number;
  }
}

const DEFAULT_BATCH = 1000;
/** Well inside the 300 s deadline: the rest waits for tomorrow's run. */
const DEFAULT_BUDGET_SECONDS = 120;

/**
 * One batch: $1 the cutoff, $2 the batch size; returns `deleted`, the runs deleted. A run's attempts
 * (task_attempts, at most its queue's attempts each) go in the same statement, so both tables stay
 * bounded by the same retention. Old runs are found newest-attempt-first on the activity index of
 * migration 0017 (the latest attempt started before the cutoff). Exported for the tests.
 */
export const PRUNE_BATCH_SQL = `
  WITH runs AS (
    DELETE FROM task_runs WHERE id IN (
      SELECT id FROM task_runs WHERE status IN ('succeeded', 'dead') AND ${RUN_ACTIVITY} < $1
       ORDER BY ${RUN_ACTIVITY} LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING id),
  attempts AS (DELETE FROM task_attempts WHERE run_id IN (SELECT id FROM runs))
  SELECT count(*)::int AS deleted FROM runs`;

export const pruneRunsTask = defineTask({
  name: 'maintenance.prune_runs',
  queue: 'maintenance',
  payload: z
    .object({
      olderThanDays: z.number().int().min(1).optional(),
      /** Rows per statement (default 1,000). */
      batchSize: z.number().int().min(1).max(10_000).optional(),
      /** Stop starting new batches after this long (default 120 s); at least one batch runs. */
      budgetSeconds: z.number().min(0).max(280).optional(),
    })
    .strict(),
  idempotencyKey: (_payload, delivery) => delivery.scheduleTime?.toISOString(),
  deadlineSeconds: 300,
  async handler(ctx) {
    const days = ctx.payload.olderThanDays ?? ctx.services.taskRunRetentionDays;
    const batchSize = ctx.payload.batchSize ?? DEFAULT_BATCH;
    const budgetMs = (ctx.payload.budgetSeconds ?? DEFAULT_BUDGET_SECONDS) * 1000;
    const started = ctx.clock.now();
    const cutoff = new Date(started - days * 86_400_000);
    let deleted = 0;
    let batches = 0;
    let complete = false;
    while (!ctx.signal.aborted) {
      const r = await ctx.db.query<{ deleted: number }>(PRUNE_BATCH_SQL, [cutoff, batchSize]);
      const n = r.rows[0]?.deleted ?? 0;
      deleted += n;
      batches += 1;
      // A short batch means nothing old is left but rows other transactions hold (skipped).
      if (n < batchSize) {
        complete = true;
        break;
      }
      if (ctx.clock.now() - started >= budgetMs) break;
    }
    ctx.log.info(
      { deleted, batches, complete, cutoff: cutoff.toISOString() },
      `pruned ${deleted} finished task runs in ${batches} batches${complete ? '' : ' (more left for the next run)'}`,
    );
    return { deleted, batches, complete, cutoff: cutoff.toISOString() };
  },
});

// maintenance.prune_runs (scheduled daily): deletes finished task runs older than the retention
// (TASK_RUN_RETENTION_DAYS), in batches, so task_runs stays the size of recent history. Running
// and failed runs are never pruned: they may still be delivered. Unsent outbox rows never are either.
import { z } from 'zod';
import { defineTask } from './define-task.ts';

declare module './define-task.ts' {
  interface TaskServices {
    /** Finished runs older than this many days are deleted. */
    taskRunRetentionDays: number;
  }
}

const BATCH = 1000;

const DELETE_BATCH = `
  DELETE FROM task_runs WHERE id IN (
    SELECT id FROM task_runs WHERE status IN ('succeeded', 'dead') AND updated_at < $1 ORDER BY updated_at LIMIT $2)`;

export const pruneRunsTask = defineTask({
  name: 'maintenance.prune_runs',
  queue: 'maintenance',
  payload: z.object({ olderThanDays: z.number().int().min(1).optional() }).strict(),
  idempotencyKey: (_payload, delivery) => delivery.scheduleTime?.toISOString(),
  deadlineSeconds: 300,
  async handler(ctx) {
    const days = ctx.payload.olderThanDays ?? ctx.services.taskRunRetentionDays;
    const cutoff = new Date(ctx.clock.now() - days * 86_400_000);
    let deleted = 0;
    // Batches keep each statement short; stopping at the deadline leaves the rest for tomorrow.
    while (!ctx.signal.aborted) {
      const r = await ctx.db.query(DELETE_BATCH, [cutoff, BATCH]);
      deleted += r.rowCount;
      if (r.rowCount < BATCH) break;
    }
    ctx.log.info({ deleted, cutoff: cutoff.toISOString() }, `pruned ${deleted} finished task runs`);
    return { deleted, cutoff: cutoff.toISOString() };
  },
});

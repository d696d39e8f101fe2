// credits.sweep_holds (scheduled every 15 minutes): releases credits holds whose task will never
// settle or release them (holds-sweep.ts says which). The schedule passes the hold age to wait
// for, HOLD_SWEEP_AFTER_SECONDS in src/task-registry.ts: the longest deadline among the registered
// tasks, so an attempt that is still running is never swept from under its task. Each release is
// keyed by the hold, so a repeated or overlapping sweep releases nothing twice.
import { z } from 'zod';
import { defineTask } from '../../tasks/define-task.ts';
import { postHoldOwner } from '../blog/index.ts';
import { type HoldOwner, sweepAbandonedHolds } from './holds-sweep.ts';

/** Every task that opens credits holds, by the prefix of its holds' refs. */
export const HOLD_OWNERS: readonly HoldOwner[] = [postHoldOwner];

export const holdsSweepPayload = z
  .object({
    /** Holds opened longer ago than this are candidates (at least the longest task deadline). */
    olderThanSeconds: z
      .number()
      .int()
      .min(15)
      .max(30 * 86_400),
  })
  .strict();

export const holdsSweepTask = defineTask({
  name: 'credits.sweep_holds',
  queue: 'credits',
  payload: holdsSweepPayload,
  // One run per schedule time (constant across Cloud Scheduler's retries); by hand, the enqueuer's key.
  idempotencyKey: (_payload, delivery) =>
    delivery.scheduleTime ? `sweep-holds:${delivery.scheduleTime.toISOString()}` : undefined,
  deadlineSeconds: 120,
  async handler(ctx) {
    const now = new Date(ctx.clock.now());
    const cutoff = new Date(now.getTime() - ctx.payload.olderThanSeconds * 1000);
    const result = await sweepAbandonedHolds(ctx.db, {
      cutoff,
      now,
      owners: HOLD_OWNERS,
      enqueue: ctx.enqueue,
      signal: ctx.signal,
      onReleased: (hold) =>
        ctx.log.warn(
          {
            ref: hold.ref,
            accountId: hold.accountId,
            credits: hold.refunded,
            openedAt: hold.createdAt,
            told: hold.told,
          },
          `released abandoned credits hold ${hold.ref}`,
        ),
    });
    if (result.released > 0 || result.inProgress > 0) {
      ctx.log.info({ ...result, cutoff: cutoff.toISOString() }, `holds sweep: ${result.released} released`);
    }
    return { ...result, cutoff: cutoff.toISOString() };
  },
});

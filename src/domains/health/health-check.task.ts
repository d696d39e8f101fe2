// health.check (scheduled every 5 minutes): probe the dependencies, record the result once per
// scheduled run, and log a change of state as a warning, once.
import { z } from 'zod';
import { defineTask } from '../../tasks/define-task.ts';
import { healthChecks } from './health.repository.ts';
import { databaseProbe, type HealthProbe, runProbes } from './health.service.ts';

declare module '../../tasks/define-task.ts' {
  interface TaskServices {
    /** Dependencies beyond the database (queue backend, WhatsApp, LLM), as they are wired in. */
    healthProbes: readonly HealthProbe[];
  }
}

export const healthCheckTask = defineTask({
  name: 'health.check',
  queue: 'maintenance',
  payload: z.object({}).strict(),
  // One run per Cloud Scheduler run (its schedule time is constant across retries); one per
  // enqueued task otherwise (the enqueuer's key).
  idempotencyKey: (_payload, delivery) => delivery.scheduleTime?.toISOString(),
  deadlineSeconds: 30,
  async handler(ctx) {
    const probes = [databaseProbe(ctx.db), ...ctx.services.healthProbes];
    const checkedAt = new Date(ctx.clock.now());
    const { status, checks } = await runProbes(probes, ctx.signal);
    const id = await healthChecks.recordCheck(ctx.db, { runKey: ctx.idempotencyKey, status, checks, checkedAt });
    if (id !== undefined) {
      const previous = await healthChecks.previousStatus(ctx.db, checkedAt);
      if (previous !== undefined && previous !== status) {
        ctx.log.warn({ previous, status, checks }, `health changed from ${previous} to ${status}`);
      }
    }
    return { status, checks };
  },
});

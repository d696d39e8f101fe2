// `backend queues sync` and `backend schedules sync`: the deploy steps that make Cloud Tasks and
// Cloud Scheduler hold what src/task-registry.ts declares. Idempotent; --dry-run changes nothing.
import type { Command } from 'commander';
import { enqueueTarget } from '../main.ts';
import { formatChanges, syncQueues } from '../tasks/queue-sync.ts';
import { syncSchedules } from '../tasks/schedule-sync.ts';
import type { ContextFactory } from './command-context.ts';

export function syncCommands(program: Command, context: ContextFactory): void {
  program
    .command('queues')
    .description('Cloud Tasks queues')
    .command('sync')
    .description('create or update the declared queues; prints what changed')
    .option('--dry-run', 'only print what would change')
    .action(async (options: { dryRun?: boolean }) => {
      const ctx = context();
      const dryRun = options.dryRun ?? false;
      ctx.out(`queues in projects/${ctx.config.tasks.projectId}/locations/${ctx.config.tasks.location}:`);
      const changes = await syncQueues(
        ctx.clients().tasks,
        enqueueTarget(ctx.config),
        [...ctx.registry.queues.values()],
        {
          dryRun,
        },
      );
      ctx.out(formatChanges('queue', changes, dryRun));
    });

  program
    .command('schedules')
    .description('Cloud Scheduler jobs')
    .command('sync')
    .description('create, update or delete the jobs this service owns; prints what changed')
    .option('--dry-run', 'only print what would change')
    .action(async (options: { dryRun?: boolean }) => {
      const ctx = context();
      const dryRun = options.dryRun ?? false;
      ctx.out(`jobs in projects/${ctx.config.tasks.projectId}/locations/${ctx.config.tasks.location}:`);
      const changes = await syncSchedules(ctx.clients().scheduler, enqueueTarget(ctx.config), ctx.registry.schedules, {
        dryRun,
      });
      ctx.out(formatChanges('job', changes, dryRun));
    });
}

// `backend queues sync` and `backend schedules sync`: the deploy steps that make Cloud Tasks and
// Cloud Scheduler hold what src/task-registry.ts declares. Idempotent; --dry-run changes nothing.
import type { Command } from 'commander';
import type { SyncChange } from '../tasks/queue-sync.ts';
import type { ContextFactory } from './command-context.ts';

interface SyncOptions {
  dryRun?: boolean;
  json?: boolean;
}

export function syncCommands(program: Command, context: ContextFactory): void {
  program
    .command('queues')
    .description('Cloud Tasks queues')
    .command('sync')
    .description('create or update the declared queues; prints what changed')
    .option('--dry-run', 'only print what would change')
    .option('--json', 'one JSON object per queue, one a line (fields: docs/cli.md)')
    .action(async (options: SyncOptions) => {
      const ctx = context();
      const dryRun = options.dryRun ?? false;
      const clients = await ctx.taskBackend();
      const [{ enqueueTarget }, { formatChanges, syncQueues }] = await Promise.all([
        import('../tasks/target.ts'),
        import('../tasks/queue-sync.ts'),
      ]);
      const parent = `projects/${ctx.config.tasks.projectId}/locations/${ctx.config.tasks.location}`;
      if (!options.json) ctx.out(`queues in ${parent}:`);
      const changes = await syncQueues(clients.tasks, enqueueTarget(ctx.config), [...ctx.registry.queues.values()], {
        dryRun,
      });
      ctx.out(options.json ? changesJson('queue', parent, changes, dryRun) : formatChanges('queue', changes, dryRun));
    });

  program
    .command('schedules')
    .description('Cloud Scheduler jobs')
    .command('sync')
    .description('create, update or delete the jobs this service owns; prints what changed')
    .option('--dry-run', 'only print what would change')
    .option('--json', 'one JSON object per job, one a line (fields: docs/cli.md)')
    .action(async (options: SyncOptions) => {
      const ctx = context();
      const dryRun = options.dryRun ?? false;
      const clients = await ctx.taskBackend();
      const [{ enqueueTarget }, { formatChanges }, { syncSchedules }] = await Promise.all([
        import('../tasks/target.ts'),
        import('../tasks/queue-sync.ts'),
        import('../tasks/schedule-sync.ts'),
      ]);
      const parent = `projects/${ctx.config.tasks.projectId}/locations/${ctx.config.tasks.location}`;
      if (!options.json) ctx.out(`jobs in ${parent}:`);
      const changes = await syncSchedules(clients.scheduler, enqueueTarget(ctx.config), ctx.registry.schedules, {
        dryRun,
      });
      ctx.out(options.json ? changesJson('job', parent, changes, dryRun) : formatChanges('job', changes, dryRun));
    });
}

/** One line per queue or job: what was (or, with --dry-run, would be) done to it. */
function changesJson(kind: 'queue' | 'job', parent: string, changes: readonly SyncChange[], dryRun: boolean): string {
  return changes
    .map((c) => JSON.stringify({ kind, name: c.name, parent, action: c.action, dryRun, details: c.details }))
    .join('\n');
}

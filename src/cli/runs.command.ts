// `backend runs list|show|replay`: inspect task runs and replay dead or failed ones.
import type { Command } from 'commander';
import type { RunStatus, TaskRun } from '../tasks/task-runs.repository.ts';
import { CliError } from './cli-errors.ts';
import type { ContextFactory } from './command-context.ts';
import { table, truncate } from './format.ts';

const STATUSES = ['running', 'succeeded', 'failed', 'dead'];

export function runsCommand(program: Command, context: ContextFactory): void {
  const runs = program.command('runs').description('inspect and replay task runs');

  runs
    .command('list')
    .description('recent runs, newest first')
    .option('--status <status>', `only runs in this status (${STATUSES.join(', ')})`)
    .option('--task <task>', 'only runs of this task')
    .option('--key <text>', 'only runs whose idempotency key contains this')
    .option('--limit <n>', 'at most this many (default 20)', '20')
    .option('--json', 'one JSON object per line (fields: docs/cli.md)')
    .action(async (options: { status?: string; task?: string; key?: string; limit: string; json?: boolean }) => {
      if (options.status && !STATUSES.includes(options.status)) {
        throw new CliError(`--status must be one of ${STATUSES.join(', ')}`, 2);
      }
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new CliError('--limit must be a positive integer', 2);
      const ctx = context();
      const { taskRuns } = await import('../tasks/task-runs.repository.ts');
      const list = await taskRuns.listRuns(await ctx.db(), {
        ...(options.status ? { status: options.status as RunStatus } : {}),
        ...(options.task ? { task: options.task } : {}),
        ...(options.key ? { keyContains: options.key } : {}),
        limit,
      });
      if (options.json) {
        if (list.length > 0) ctx.out(list.map((r) => JSON.stringify(runJson(r))).join('\n'));
        return;
      }
      if (list.length === 0) {
        ctx.out('no runs');
        return;
      }
      const rows = list.map((r) => [
        String(r.id),
        r.task,
        r.status,
        String(r.attempts),
        r.updatedAt.toISOString().replace('T', ' ').slice(0, 19),
        truncate(r.idempotencyKey, 40),
        truncate(r.lastError ?? '', 60),
      ]);
      ctx.out(table(['ID', 'TASK', 'STATUS', 'ATTEMPTS', 'UPDATED (UTC)', 'KEY', 'LAST ERROR'], rows));
    });

  runs
    .command('show')
    .description('one run: payload, result, every attempt')
    .argument('<id>', 'run id (from runs list)')
    .action(async (id: string) => {
      const ctx = context();
      const { taskRuns } = await import('../tasks/task-runs.repository.ts');
      const run = await taskRuns.getRun(await ctx.db(), parseId(id));
      if (!run) throw new CliError(`no run with id ${id}`);
      ctx.out(JSON.stringify(run, null, 2));
    });

  runs
    .command('replay')
    .description('enqueue a dead or failed run again, as a new series of attempts')
    .argument('<id>', 'run id (from runs list --status dead)')
    .action(async (id: string) => {
      const ctx = context();
      const { replayRun } = await import('../tasks/replay.ts');
      const db = await ctx.db();
      const replayed = await replayRun(db, await ctx.enqueuer(), parseId(id), new Date(ctx.clock.now()));
      ctx.out(
        `replaying run ${replayed.run.id} (${replayed.run.task}, replay ${replayed.run.replays}): ${replayed.taskName}`,
      );
    });
}

/** A run as `runs list --json` prints it: the list's columns, full length, and the times. */
function runJson(r: TaskRun) {
  return {
    id: r.id,
    task: r.task,
    status: r.status,
    attempts: r.attempts,
    replays: r.replays,
    key: r.idempotencyKey,
    queue: r.queueName,
    lastError: r.lastError,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
    finishedAt: r.finishedAt?.toISOString() ?? null,
  };
}

function parseId(id: string): number {
  if (!/^\d+$/.test(id)) throw new CliError(`run id must be a number, got "${id}"`, 2);
  return Number(id);
}

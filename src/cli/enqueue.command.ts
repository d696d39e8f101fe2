// `backend enqueue <task> <json> [--delay 30s]`: validates against the registry and enqueues one task.
import type { Command } from 'commander';
import { emulatorAddress } from '../tasks/target.ts';
import { CliError } from './cli-errors.ts';
import { type ContextFactory, loadRegistry } from './command-context.ts';

export function enqueueCommand(program: Command, context: ContextFactory): void {
  program
    .command('enqueue')
    .description('validate and enqueue one task through the configured Cloud Tasks backend')
    .argument('<task>', 'task name, e.g. health.check (the list: backend enqueue --help)')
    .argument('[json]', 'payload as JSON', '{}')
    .option('--delay <delay>', 'run later: 30s, 5m, 2h, 1d (at most 30 days)')
    .option('--key <key>', 'idempotency key, for tasks whose payload does not give one')
    // A function: the registry (every task module) is loaded only when the help is shown.
    .addHelpText('after', () => `\n${taskList()}`)
    .addHelpText(
      'after',
      `\nExample:\n  backend enqueue health.check '{}'\n  backend enqueue health.check '{}' --delay 30s`,
    )
    .action(async (task: string, json: string, options: { delay?: string; key?: string }) => {
      let payload: unknown;
      try {
        payload = JSON.parse(json);
      } catch (err) {
        throw new CliError(`payload is not valid JSON: ${(err as Error).message}`, 2);
      }
      // A mistyped name is told at once, even with no task backend running.
      const names = [...loadRegistry().tasks.keys()];
      if (!names.includes(task)) {
        throw new CliError(
          `No task named "${task}". Known tasks: ${names.sort().join(', ')} (backend enqueue --help lists them with their queues).`,
        );
      }
      const ctx = context();
      const enqueuer = await ctx.enqueuer();
      const result = await enqueuer
        .enqueueByName(task, payload, {
          ...(options.delay ? { delay: options.delay } : {}),
          ...(options.key ? { key: options.key } : {}),
        })
        .catch(async (err: { code?: number }) => {
          // UNAVAILABLE after the connection check passed: the backend went away meanwhile.
          if (err.code !== GRPC_UNAVAILABLE) throw err;
          const where = emulatorAddress(ctx.config) ?? 'Google Cloud Tasks';
          throw new CliError(
            `cannot reach the task backend at ${where}: is \`npm start\` (or \`npx backend emulator\`) running?`,
          );
        });
      ctx.out(`${result.created ? 'enqueued' : 'already enqueued (same task id)'}: ${result.taskName}`);
    });
}

/** gRPC's status code 14: nothing answered where the backend should be. */
const GRPC_UNAVAILABLE = 14;

/** Every registered task, its queue, and the schedule that runs it, if any. */
function taskList(): string {
  const registry = loadRegistry();
  const tasks = [...registry.tasks.values()];
  const width = Math.max(...tasks.map((t) => t.name.length));
  const queueWidth = Math.max(...tasks.map((t) => t.queue.length));
  const lines = tasks.map((t) => {
    const schedule = registry.schedules.find((s) => s.task === t.name);
    const scheduled = schedule ? `  also on schedule ${schedule.name} (${schedule.cron} ${schedule.timeZone})` : '';
    return `  ${t.name.padEnd(width)}  queue ${t.queue.padEnd(queueWidth)}${scheduled}`.trimEnd();
  });
  return [`Tasks (${tasks.length}):`, ...lines].join('\n');
}

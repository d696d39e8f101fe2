// `backend enqueue <task> <json> [--delay 30s]`: validates against the registry and enqueues one task.
import type { Command } from 'commander';
import { emulatorAddress } from '../main.ts';
import { CliError } from './cli-context.ts';
import type { ContextFactory } from './command-context.ts';

export function enqueueCommand(program: Command, context: ContextFactory): void {
  program
    .command('enqueue')
    .description('validate and enqueue one task through the configured Cloud Tasks backend')
    .argument('<task>', 'task name, e.g. health.check')
    .argument('[json]', 'payload as JSON', '{}')
    .option('--delay <delay>', 'run later: 30s, 5m, 2h, 1d (at most 30 days)')
    .option('--key <key>', 'idempotency key, for tasks whose payload does not give one')
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
      const ctx = context();
      const result = await ctx
        .enqueuer()
        .enqueueByName(task, payload, {
          ...(options.delay ? { delay: options.delay } : {}),
          ...(options.key ? { key: options.key } : {}),
        })
        .catch((err: { code?: number }) => {
          if (err.code !== 14) throw err; // UNAVAILABLE: nothing listens where the backend should be
          const where = emulatorAddress(ctx.config) ?? 'Google Cloud Tasks';
          throw new CliError(
            `cannot reach the task backend at ${where}: is \`npm start\` (or \`npx backend emulator\`) running?`,
          );
        });
      ctx.out(`${result.created ? 'enqueued' : 'already enqueued (same task id)'}: ${result.taskName}`);
    });
}

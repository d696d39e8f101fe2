// `backend serve` (what `npm start` runs): the whole service in one process.
import type { Command } from 'commander';
import { cliContext } from './cli-context.ts';

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('start the HTTP service (migrates the database first)')
    .action(async () => {
      const { config, logger } = cliContext();
      // Loaded on use, so `backend --help` and the other commands do not load the whole service.
      const { closeOnSignals, startService } = await import('../main.ts');
      const service = await startService(config, { logger });
      closeOnSignals(service, logger, config.shutdownTimeoutMs);
    });
}

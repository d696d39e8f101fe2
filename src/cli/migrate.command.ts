// `backend migrate`: applies pending migrations and exits (a deploy step).
import type { Command } from 'commander';
import { configAndLogger } from './command-context.ts';

export function migrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const { config } = await configAndLogger();
      const [{ databaseFor }, { migrate }, { describeDatabase, openDatabase }] = await Promise.all([
        import('../config.ts'),
        import('../db/migrate.ts'),
        import('../db/open-database.ts'),
      ]);
      const db = await openDatabase(databaseFor(config));
      try {
        const out = (line: string) => process.stdout.write(`${line}\n`);
        out(`migrating ${describeDatabase(config.database)}`);
        const result = await migrate(db, undefined, (name, ms) => out(`  applied ${name} (${Math.round(ms)} ms)`));
        out(
          result.applied.length === 0
            ? `up to date (${result.alreadyApplied} migrations already applied)`
            : `applied ${result.applied.length} migration(s); ${result.alreadyApplied} were already applied`,
        );
      } finally {
        await db.close();
      }
    });
}

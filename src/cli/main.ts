// The `backend` command line: one file per command, each a thin call into the same wiring as main.ts.
import { Command, CommanderError } from 'commander';
import { reportError } from './cli-context.ts';
import { emulatorCommand } from './emulator.command.ts';
import { migrateCommand } from './migrate.command.ts';
import { serveCommand } from './serve.command.ts';

export function buildProgram(): Command {
  const program = new Command('backend')
    .description('WhatsApp content service on Google Cloud Tasks')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  serveCommand(program);
  migrateCommand(program);
  emulatorCommand(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Runs the CLI and returns the exit code: 0 success, 1 failure, 2 bad usage. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
    }
    return reportError(err);
  }
}

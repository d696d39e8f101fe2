// The `backend` command line: one file per command, each a thin call into the same wiring as main.ts.
// This file and the *.command.ts files load only commander and the commands' definitions: what a
// command does (the database, the task backend, the registry) is imported when it runs, so
// `--help`, `--version` and a command handed to the running service start in a few milliseconds.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { Config } from '../config.ts';
import { reportError } from './cli-errors.ts';
import type { CommandContext } from './command-context.ts';
import { creditsCommand } from './credits.command.ts';
import { emulatorCommand } from './emulator.command.ts';
import { enqueueCommand } from './enqueue.command.ts';
import { migrateCommand } from './migrate.command.ts';
import { outboxCommand } from './outbox.command.ts';
import { runsCommand } from './runs.command.ts';
import { serveCommand } from './serve.command.ts';
import { syncCommands } from './sync.command.ts';
import { whatsappCommand } from './whatsapp.command.ts';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: CliIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

/** The version in package.json (the one file that states it). */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

/**
 * The commands that work on the service's data or its task backend. When a `backend serve` runs on
 * the same DATA_DIR, they run inside it (control-channel.ts): it knows its database and the ports
 * of its emulator, whatever variables this terminal has.
 */
const SERVICE_COMMANDS = new Set(['enqueue', 'runs', 'outbox', 'credits', 'queues', 'schedules', 'whatsapp']);

export function buildProgram(io: CliIo, context: () => CommandContext): Command {
  const program = new Command('backend')
    .description('WhatsApp content service on Google Cloud Tasks')
    .version(packageVersion(), '-V, --version', 'print the version (from package.json)')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', '\nEvery command and its output, with the --json fields: docs/cli.md')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();
  serveCommand(program, (argv, ctx, err) =>
    runCli(argv, { context: () => ctx, delegate: false, io: { out: ctx.out, err } }),
  );
  migrateCommand(program);
  enqueueCommand(program, context);
  runsCommand(program, context);
  outboxCommand(program, context);
  creditsCommand(program, context);
  syncCommands(program, context);
  whatsappCommand(program, context);
  emulatorCommand(program);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const command of all(program)) {
    command
      .exitOverride()
      .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  }
  return program;
}

export interface RunOptions {
  io?: CliIo;
  /** The context commands use. (Default: their own database and clients, from the environment) */
  context?: () => CommandContext;
  /** false inside the service: never hand a command on to another process. (Default: true) */
  delegate?: boolean;
}

/** Runs the CLI and returns the exit code: 0 success, 1 failure, 2 bad usage. */
export async function runCli(argv: string[], options: RunOptions = {}): Promise<number> {
  const io = options.io ?? processIo;
  let opened: CommandContext | undefined;
  let openContext: (() => CommandContext) | undefined;
  const context =
    options.context ??
    (() => {
      if (!openContext) throw new Error('the command context was asked for before it was loaded');
      opened ??= openContext();
      return opened;
    });
  try {
    if (options.context === undefined && SERVICE_COMMANDS.has(argv[0] ?? '') && !asksForHelp(argv)) {
      const { loadConfig } = await import('../config.ts');
      const config = loadConfig();
      if (options.delegate !== false) {
        const delegated = await runInService(config, argv, io);
        if (delegated !== undefined) return delegated;
      }
      const { localContext } = await import('./command-context.ts');
      openContext = () => localContext(config, io.out);
    }
    const program = buildProgram(io, context);
    if (argv.length === 0) {
      io.err(program.helpInformation().trimEnd());
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
    }
    if ((err as Error).name === 'DelegateToServiceError' && options.delegate !== false) {
      // An older `backend serve` holds the embedded database and wrote no control file we could use.
      const { loadConfig } = await import('../config.ts');
      const delegated = await runInService(loadConfig(), argv, io);
      if (delegated !== undefined) return delegated;
    }
    return reportError(err, io.err);
  } finally {
    await opened?.close();
  }
}

/** Help is printed here, never asked of the service (a "help" argument is a value: simulate help). */
const asksForHelp = (argv: string[]) => {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
};

/**
 * Runs argv in the service that owns DATA_DIR, printing what it printed; undefined when none
 * answers, or when this terminal's DATABASE_URL names another database than the service's.
 */
async function runInService(config: Config, argv: string[], io: CliIo): Promise<number | undefined> {
  const { runningService, runInService: post } = await import('./control-client.ts');
  const service = runningService(config.dataDir);
  if (!service) return undefined;
  if (config.database.kind === 'postgres') {
    const { describeDatabase } = await import('../db/open-database.ts');
    if (service.service?.database !== describeDatabase(config.database)) return undefined;
  }
  const result = await post(service, argv);
  if (!result) return undefined;
  if (result.output) io.out(result.output.trimEnd());
  if (result.errors) io.err(result.errors.trimEnd());
  return result.code;
}

// The `backend` command line: one file per command, each a thin call into the same wiring as main.ts.
import { Command, CommanderError } from 'commander';
import { loadConfig } from '../config.ts';
import { reportError } from './cli-context.ts';
import { type CommandContext, DelegateToServiceError, localContext } from './command-context.ts';
import { runInService } from './control-channel.ts';
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

export function buildProgram(io: CliIo, context: () => CommandContext): Command {
  const program = new Command('backend')
    .description('WhatsApp content service on Google Cloud Tasks')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();
  serveCommand(program, (argv, ctx) =>
    runCli(argv, { context: () => ctx, delegate: false, io: { out: ctx.out, err: ctx.out } }),
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
  const context =
    options.context ??
    (() => {
      opened ??= localContext(loadConfig(), io.out);
      return opened;
    });
  const program = buildProgram(io, context);
  if (argv.length === 0) {
    io.err(program.helpInformation().trimEnd());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof DelegateToServiceError && options.delegate !== false) {
      // `backend serve` holds the embedded database: run the command inside it.
      const result = await runInService(loadConfig().dataDir, argv);
      if (result) {
        if (result.output) io.out(result.output.trimEnd());
        return result.code;
      }
    }
    return reportError(err, io.err);
  } finally {
    await opened?.close();
  }
}

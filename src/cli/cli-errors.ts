// The command line's errors: CliError (a failure the user can act on, with its exit code) and how
// any error is printed. Nothing heavy is imported here: `--help` and `--version` load this file too.

/** A failure the user can act on: printed as one line, exit code 1 (2 for bad usage). */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Prints an error the way a person wants to read it, and returns the exit code. */
export function reportError(
  err: unknown,
  write: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): number {
  // config.ts's ConfigError, recognised without loading config.ts (and zod) for every command.
  if (err instanceof Error && err.name === 'ConfigError' && Array.isArray((err as { issues?: unknown }).issues)) {
    for (const issue of (err as Error & { issues: string[] }).issues) write(`backend: invalid configuration: ${issue}`);
    return 1;
  }
  if (err instanceof CliError) {
    write(`backend: ${err.message}`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  write(`backend: ${message}`);
  if (process.env.LOG_LEVEL === 'debug' || process.env.LOG_LEVEL === 'trace') {
    write(err instanceof Error && err.stack ? err.stack : '');
  }
  return 1;
}

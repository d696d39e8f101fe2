// What every command shares: the validated config, a logger, and errors that become exit codes.
import { type Config, ConfigError, loadConfig } from '../config.ts';
import { createLogger, type Logger } from '../logger.ts';

/** A failure the user can act on: printed as one line, exit code 1 (2 for bad usage). */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export interface CliContext {
  config: Config;
  logger: Logger;
}

export function cliContext(env: NodeJS.ProcessEnv = process.env): CliContext {
  const config = loadConfig(env);
  return { config, logger: createLogger({ level: config.log.level, format: config.log.format }) };
}

/** Prints an error the way a person wants to read it, and returns the exit code. */
export function reportError(
  err: unknown,
  write: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): number {
  if (err instanceof ConfigError) {
    for (const issue of err.issues) write(`backend: invalid configuration: ${issue}`);
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

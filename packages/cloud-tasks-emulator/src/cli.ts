// The emulator's command line, shared by its own binary (`cloud-tasks-emulator`) and by any program
// that offers it as a subcommand (the service's `backend emulator`): the options and their parsing,
// the banner, and stopping on a signal. Only commander is loaded here; the emulator itself is
// imported when it starts, so `--help` and `--version` stay fast.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { Emulator, EmulatorOptions } from './index.ts';

// The emulator's defaults (index.ts), repeated here so `--help` need not load the emulator.
const DEFAULT_GRPC_PORT = 8123;
const DEFAULT_HTTP_PORT = 8124;

/** How long a signal waits for the emulator to close (flushing the journal) before exiting anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

/** A finished task's name is blocked about 1 hour, as Cloud Tasks does; a deleted queue's not at all (see README). */
const TASK_TOMBSTONE_DEFAULT = '1h';
const QUEUE_TOMBSTONE_DEFAULT = '0';

/** What the options of addEmulatorOptions() parse to. */
export interface EmulatorCliOptions {
  grpcPort: number;
  httpPort: number;
  dataDir?: string;
  host: string;
  allowHost: string[];
  issuer?: string;
  taskTombstone: number;
  queueTombstone: number;
  queue: string[];
}

const repeat = (value: string, previous: string[]) => [...previous, value];

/** Adds the emulator's options to a command (the binary's program, or a subcommand of another CLI). */
export function addEmulatorOptions(command: Command): Command {
  return command
    .option('--grpc-port <port>', 'gRPC port, 0 for any free one', parsePort, DEFAULT_GRPC_PORT)
    .option('--http-port <port>', 'REST/JSON and OIDC issuer port, 0 for any free one', parsePort, DEFAULT_HTTP_PORT)
    .option('--data-dir <dir>', 'keep queues, tasks, jobs and the signing key here (default: memory only)')
    .option(
      '--host <host>',
      'interface to listen on; anything but loopback lets other machines create tasks with signed tokens',
      '127.0.0.1',
    )
    .option(
      '--allow-host <name>',
      'a host name REST clients may use besides localhost and IP addresses (repeatable; e.g. a container name)',
      repeat,
      [] as string[],
    )
    .option(
      '--queue <name>',
      'create this queue at start unless it exists, e.g. projects/dev/locations/local/queues/default (repeatable)',
      repeat,
      [] as string[],
    )
    .option('--issuer <url>', 'the iss of the OIDC tokens it signs (default: its REST base URL)')
    .option(
      '--task-tombstone <duration>',
      "how long a finished or deleted task's name cannot be reused, e.g. 1h, 90s, 0 (Cloud Tasks: about 1h)",
      parseDuration,
      parseDuration(TASK_TOMBSTONE_DEFAULT),
    )
    .option(
      '--queue-tombstone <duration>',
      "how long a deleted queue's name cannot be reused; 7d is what Cloud Tasks does (default: 0, reuse is only warned about)",
      parseDuration,
      parseDuration(QUEUE_TOMBSTONE_DEFAULT),
    );
}

/** What the parsed command line asks startEmulator() for (its log aside). */
export function emulatorOptions(options: EmulatorCliOptions): EmulatorOptions {
  return {
    host: options.host,
    allowedHosts: options.allowHost,
    grpcPort: options.grpcPort,
    httpPort: options.httpPort,
    taskTombstoneMs: options.taskTombstone,
    queueTombstoneMs: options.queueTombstone,
    queues: options.queue,
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
  };
}

/**
 * Starts the emulator as the command line asked, prints the banner on stdout and its warnings and
 * errors on stderr, and closes it cleanly on SIGINT or SIGTERM (then exits the process).
 */
export async function serveEmulator(options: EmulatorCliOptions): Promise<Emulator> {
  const { startEmulator } = await import('./index.ts');
  const emulator = await startEmulator({
    ...emulatorOptions(options),
    log: (level, message, data) => {
      if (level === 'warn' || level === 'error') {
        // A multi-line message (the warning about listening beyond loopback) is shown as a block.
        const text = message.includes('\n') ? `\n${message}\n` : message;
        process.stderr.write(`emulator ${level}: ${text}${data ? ` ${JSON.stringify(data)}` : ''}\n`);
      }
    },
  });
  process.stdout.write(banner(emulator, options));
  stopOnSignals(emulator);
  return emulator;
}

/** The package's version, from its package.json (one level above src/ and dist/ alike). */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

/**
 * The `cloud-tasks-emulator` binary: parses `args` (process.argv without node and the script),
 * starts the emulator, and resolves once it listens. Returns the exit code for a command line that
 * ends at once (`--help`, `--version`, a bad option), or undefined while the emulator runs.
 */
export async function main(args: readonly string[]): Promise<number | undefined> {
  const program = addEmulatorOptions(
    new Command('cloud-tasks-emulator')
      .description(
        'Google Cloud Tasks v2 (+ v2beta3 queue stats) and Cloud Scheduler v1 emulator, over gRPC and REST, until stopped',
      )
      .version(packageVersion(), '-V, --version', 'print the version')
      .helpOption('-h, --help', 'show the options')
      .exitOverride(),
  );
  let started: Promise<Emulator> | undefined;
  program.action((options: EmulatorCliOptions) => {
    started = serveEmulator(options);
  });
  try {
    await program.parseAsync([...args], { from: 'user' });
  } catch (err) {
    // --help and --version end here with code 0 (commander has printed them); bad usage with 2.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  try {
    await started;
  } catch (err) {
    process.stderr.write(`cloud-tasks-emulator: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  return undefined;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('expected a port number (0-65535)');
  return port;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `7d`, `1h`, `30m`, `90s`, `500ms`, `1.5h`, or `0`, as milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) {
    throw new InvalidArgumentError('expected a duration such as 7d, 1h, 30m, 90s or 0');
  }
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!);
}

/** 3600000 → "1h", 0 → "0". */
function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms !== 0 && ms % UNIT_MS[unit]! === 0) return `${ms / UNIT_MS[unit]!}${unit}`;
  }
  return ms === 0 ? '0' : `${ms}ms`;
}

function banner(emulator: Emulator, options: EmulatorCliOptions): string {
  const { dataDir } = options;
  const host = emulator.grpcAddress.slice(0, emulator.grpcAddress.lastIndexOf(':'));
  const lines = [
    `Cloud Tasks v2 + Cloud Scheduler v1 emulator ${packageVersion()}`,
    `  gRPC   ${emulator.grpcAddress}`,
    `  REST   ${emulator.httpUrl}`,
    `  OIDC   issuer ${emulator.issuer}, JWKS ${emulator.jwksUri}, X.509 certs ${emulator.httpUrl}/certs`,
    `  data   ${dataDir ?? 'memory only (use --data-dir to keep state across restarts)'}`,
    `  names  a finished task's blocked ${formatDuration(options.taskTombstone)}, a deleted queue's ${formatDuration(options.queueTombstone)}${options.queueTombstone === 0 ? ' (Cloud Tasks: 7d; --queue-tombstone 7d)' : ''}`,
    ...(options.queue.length > 0 ? [`  queues ${options.queue.join(', ')}`] : []),
    '',
    'Environment for code that reads it (the official clients take options, not variables):',
    `  export CLOUD_TASKS_EMULATOR_HOST=${emulator.grpcAddress}`,
    `  export CLOUD_SCHEDULER_EMULATOR_HOST=${emulator.grpcAddress}`,
    `  export CLOUD_TASKS_EMULATOR_REST_URL=${emulator.httpUrl}`,
    '',
    'Node (@google-cloud/tasks; the same options work for CloudSchedulerClient):',
    `  gRPC: new CloudTasksClient({ apiEndpoint: '${host}', port: ${emulator.grpcPort}, sslCreds: gax.grpc.credentials.createInsecure(), authClient: new PassThroughClient() })`,
    `  REST: new CloudTasksClient({ fallback: 'rest', protocol: 'http', apiEndpoint: '${host}', port: ${emulator.httpPort}, authClient: new PassThroughClient() })`,
    `  curl: curl ${emulator.httpUrl}/v2/projects/dev/locations/local/queues   (POST/PATCH: -H 'Content-Type: application/json')`,
    'Browsers are refused (any Origin header), and so is a Host that does not name this machine.',
    'Python, Go and the rest: the README of @backend/cloud-tasks-emulator. Stop with Ctrl+C.',
    '',
  ];
  return lines.join('\n');
}

function stopOnSignals(emulator: Emulator): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`received ${signal}, stopping the emulator\n`);
    const timer = setTimeout(() => process.exit(1), SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    emulator.close().then(
      () => {
        process.stderr.write('emulator stopped cleanly\n');
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(`emulator: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

// `backend emulator`: the Cloud Tasks + Cloud Scheduler emulator on its own, for services written
// in any language; prints where it listens and how to point a client at it.
import { type Command, InvalidArgumentError } from 'commander';
import type { Emulator } from '../emulator/index.ts';

// The emulator's defaults, repeated here so `backend --help` need not load the emulator.
const DEFAULT_GRPC_PORT = 8123;
const DEFAULT_HTTP_PORT = 8124;

/** How long a signal waits for the emulator to close (flushing the journal) before exiting anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

interface EmulatorCliOptions {
  grpcPort: number;
  httpPort: number;
  dataDir?: string;
  host: string;
  allowHost: string[];
}

export function emulatorCommand(program: Command): void {
  program
    .command('emulator')
    .description('run the Cloud Tasks v2 + Cloud Scheduler v1 emulator (gRPC and REST) until stopped')
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
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .action(async (options: EmulatorCliOptions) => {
      const { startEmulator } = await import('../emulator/index.ts');
      const emulator = await startEmulator({
        host: options.host,
        allowedHosts: options.allowHost,
        grpcPort: options.grpcPort,
        httpPort: options.httpPort,
        ...(options.dataDir ? { dataDir: options.dataDir } : {}),
        log: (level, message, data) => {
          if (level === 'warn' || level === 'error') {
            // A multi-line message (the warning about listening beyond loopback) is shown as a block.
            const text = message.includes('\n') ? `\n${message}\n` : message;
            process.stderr.write(`emulator ${level}: ${text}${data ? ` ${JSON.stringify(data)}` : ''}\n`);
          }
        },
      });
      process.stdout.write(banner(emulator, options.dataDir));
      stopOnSignals(emulator);
    });
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('expected a port number (0-65535)');
  return port;
}

function banner(emulator: Emulator, dataDir: string | undefined): string {
  const host = emulator.grpcAddress.slice(0, emulator.grpcAddress.lastIndexOf(':'));
  const lines = [
    'Cloud Tasks v2 + Cloud Scheduler v1 emulator',
    `  gRPC   ${emulator.grpcAddress}`,
    `  REST   ${emulator.httpUrl}`,
    `  OIDC   issuer ${emulator.issuer}, JWKS ${emulator.jwksUri}, PEM ${emulator.httpUrl}/certs`,
    `  data   ${dataDir ?? 'memory only (use --data-dir to keep state across restarts)'}`,
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
    'Other languages: docs/emulator.md. Stop with Ctrl+C.',
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
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`emulator: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

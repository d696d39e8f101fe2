// @backend/cloud-tasks-emulator: the Cloud Tasks v2 + Cloud Scheduler v1 emulator, one core served
// over gRPC and REST/JSON, dispatching to HTTP targets as the real services do. A package of its
// own: it imports nothing from the programs that use it (README.md).
import { CloudSchedulerService } from './cloud-scheduler.ts';
import { CloudTasksService } from './cloud-tasks.ts';
import { Attempts, type EmulatorContext, type LogFn } from './context.ts';
import { Deliverer } from './deliver.ts';
import { EmulatorEmitter } from './events.ts';
import { startGrpcServer } from './grpc-server.ts';
import { memoryJournal, openJournal } from './journal.ts';
import { exposureWarning, isLoopbackAddress } from './lockdown.ts';
import { Signer } from './oidc.ts';
import { loadServices } from './protos.ts';
import { startRestServer } from './rest-server.ts';
import { type Clock, systemClock } from './time.ts';

export { backoffDelayMs } from './backoff.ts';
export type { LogFn, LogLevel } from './context.ts';
export type {
  EmulatorEventName,
  EmulatorEvents,
  JobAttemptEvent,
  TaskAttemptEvent,
  TaskEvent,
  WaitForOptions,
} from './events.ts';
export { EmulatorEmitter } from './events.ts';
export type { Clock } from './time.ts';
export { CLOUD_QUEUE_TOMBSTONE_MS } from './tombstones.ts';

export const DEFAULT_GRPC_PORT = 8123;
export const DEFAULT_HTTP_PORT = 8124;
const HOUR_MS = 3_600_000;

export interface EmulatorOptions {
  /** Interface both servers listen on; anything but loopback is warned about. (Default: '127.0.0.1') */
  host?: string;
  /**
   * Host names (e.g. a container's service name) that REST requests may name in `Host`, besides
   * localhost, loopback addresses, the bound address and the issuer's host; others are refused
   * (DNS rebinding). (Default: none)
   */
  allowedHosts?: readonly string[];
  /** gRPC port; 0 picks a free one. (Default: 8123) */
  grpcPort?: number;
  /** REST/JSON and OIDC issuer port; 0 picks a free one. (Default: 8124) */
  httpPort?: number;
  /** Where queues, tasks, tombstones, jobs and the signing key are kept; unset keeps everything in memory. */
  dataDir?: string;
  /** The source of "now" for schedules, retries, rate limits and tokens. (Default: the system clock) */
  clock?: Clock;
  /** false: nothing is dispatched until tick() is called, for tests. (Default: true) */
  autoDispatch?: boolean;
  /** How long a finished or deleted named task's name stays blocked. (Default: 1 h, as Cloud Tasks) */
  taskTombstoneMs?: number;
  /**
   * How long a deleted queue's name stays blocked. Cloud Tasks blocks it for 7 days
   * (`CLOUD_QUEUE_TOMBSTONE_MS`); locally the default is none, so test suites and setup scripts
   * that delete and recreate fixture queues on one long-running emulator keep working, and a
   * reuse that Cloud Tasks would refuse is logged as a warning instead. (Default: 0)
   */
  queueTombstoneMs?: number;
  /**
   * Queues to create at start (full names, projects/P/locations/L/queues/Q) unless they exist,
   * with the default settings. A malformed name makes startEmulator() reject. (Default: none)
   */
  queues?: readonly string[];
  /** The `iss` of the tokens it signs. (Default: the REST base URL, e.g. http://127.0.0.1:8124) */
  issuer?: string;
  /** Where the emulator's own log lines go. (Default: nowhere) */
  log?: LogFn;
}

export interface Emulator {
  /** host:port of the gRPC server, e.g. "127.0.0.1:8123". */
  readonly grpcAddress: string;
  readonly grpcPort: number;
  /** Base URL of the REST/JSON API and the OIDC issuer endpoints, e.g. "http://127.0.0.1:8124". */
  readonly httpUrl: string;
  readonly httpPort: number;
  /** `iss` of the tokens; /.well-known/openid-configuration, /jwks and /certs are served at httpUrl. */
  readonly issuer: string;
  /** JWKS URL to verify tokens against (httpUrl + '/jwks'). */
  readonly jwksUri: string;
  /** What happened, as it happened: await `events.waitFor(name, predicate)` instead of sleeping. */
  readonly events: EmulatorEmitter;
  /**
   * Dispatches everything due at clock.now() (within rate limits and concurrency caps), runs due
   * scheduler jobs, and resolves once those attempts (and any other in flight) have their outcome.
   * Each task or job gets at most one attempt per tick. Attempts past their deadline on the
   * emulator's clock are cancelled first.
   */
  tick(): Promise<void>;
  /** Stops both servers and the timers, cancels attempts in flight (their tasks stay due), flushes the journal. */
  close(): Promise<void>;
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? '127.0.0.1';
  const clock = options.clock ?? systemClock;
  const autoDispatch = options.autoDispatch ?? true;
  const log: LogFn = options.log ?? (() => {});
  const events = new EmulatorEmitter();
  const signer = await Signer.load(options.dataDir);

  let closed = false;
  let pumpQueued = false;
  let timer: NodeJS.Timeout | undefined;
  const wake = () => {
    if (!autoDispatch || closed || pumpQueued) return;
    pumpQueued = true;
    // One look per turn of the event loop, however many changes asked for it.
    setImmediate(pump);
  };
  const deliverer = new Deliverer();
  const ctx: EmulatorContext = {
    clock,
    events,
    journal: memoryJournal,
    persistent: false,
    signer,
    deliverer,
    attempts: new Attempts(wake, log),
    issuer: options.issuer ?? '',
    log,
    wake,
  };
  const tasks = new CloudTasksService(ctx, {
    taskTombstoneMs: options.taskTombstoneMs ?? HOUR_MS,
    queueTombstoneMs: options.queueTombstoneMs ?? 0,
  });
  const scheduler = new CloudSchedulerService(ctx);

  if (options.dataDir) {
    const { state, journal } = await openJournal(
      options.dataDir,
      () => ({ ...tasks.capture(), ...scheduler.capture() }),
      (err) => log('error', 'journal write failed', { err: String(err) }),
    );
    tasks.restore(state);
    scheduler.restore(state, clock.now());
    ctx.journal = journal;
    ctx.persistent = true;
  }
  try {
    await tasks.createQueuesAtStart(options.queues ?? []);
  } catch (err) {
    await ctx.journal.close();
    throw err;
  }

  function pump(): void {
    pumpQueued = false;
    if (closed) return;
    const now = clock.now();
    ctx.attempts.expire(now);
    tasks.pump(now);
    scheduler.pump(now);
    if (timer) clearTimeout(timer);
    const nexts = [tasks.nextWakeAt(now), scheduler.nextWakeAt(now)].filter((t): t is number => t !== undefined);
    // Look again at least once a minute: tombstones expire, and an injected clock may have moved.
    const at = Math.min(now + 60_000, ...nexts);
    timer = setTimeout(wake, Math.max(0, at - now));
    timer.unref();
  }

  const { tasks: tasksSpec, tasksV2beta3: tasksV2beta3Spec, scheduler: schedulerSpec } = loadServices();
  const services = [
    { spec: tasksSpec, handlers: tasks.handlers() },
    { spec: tasksV2beta3Spec, handlers: tasks.handlersV2beta3() },
    { spec: schedulerSpec, handlers: scheduler.handlers() },
  ];
  const displayHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const urlHost = displayHost.includes(':') ? `[${displayHost}]` : displayHost;
  let httpUrl = '';
  const rest = await startRestServer({
    host,
    port: options.httpPort ?? DEFAULT_HTTP_PORT,
    services,
    signer,
    issuer: () => ctx.issuer,
    baseUrl: () => httpUrl,
    allowedHosts: options.allowedHosts ?? [],
    log,
  });
  httpUrl = `http://${urlHost}:${rest.port}`;
  ctx.issuer = options.issuer ?? httpUrl;
  let grpc: Awaited<ReturnType<typeof startGrpcServer>>;
  try {
    grpc = await startGrpcServer(host, options.grpcPort ?? DEFAULT_GRPC_PORT, services, log);
  } catch (err) {
    await rest.close();
    await ctx.journal.close();
    throw err;
  }
  const grpcAddress = `${urlHost}:${grpc.port}`;
  log('info', `Cloud Tasks + Cloud Scheduler emulator: gRPC ${grpcAddress}, REST ${httpUrl}`, {
    grpcAddress,
    httpUrl,
    dataDir: options.dataDir,
  });
  if (!isLoopbackAddress(host)) log('warn', exposureWarning(host, { grpc: grpc.port, http: rest.port }));
  wake();

  let closing: Promise<void> | undefined;
  return {
    grpcAddress,
    grpcPort: grpc.port,
    httpUrl,
    httpPort: rest.port,
    issuer: ctx.issuer,
    jwksUri: `${httpUrl}/jwks`,
    events,
    async tick() {
      const seen = new Set<object>();
      for (;;) {
        if (closed) return;
        const now = clock.now();
        ctx.attempts.expire(now);
        tasks.pump(now, seen);
        scheduler.pump(now, seen);
        if (ctx.attempts.size === 0) return;
        await ctx.attempts.settled();
      }
    },
    close() {
      closing ??= (async () => {
        closed = true;
        if (timer) clearTimeout(timer);
        await Promise.all([grpc.close(), rest.close()]);
        await ctx.attempts.discardAll();
        deliverer.close();
        await ctx.journal.close();
      })();
      return closing;
    },
  };
}

// The composition root: config → adapters → buildApp → listen, and a graceful close on SIGTERM.
// Locally it also starts the embedded Cloud Tasks + Cloud Scheduler emulator and syncs the declared
// queues and schedules into it, so `npm start` is the whole system.

import type { Emulator } from '@backend/cloud-tasks-emulator';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.ts';
import { type Clock, systemClock } from './clock.ts';
import { type Config, databaseFor } from './config.ts';
import type { Db } from './db/db.ts';
import { migrate } from './db/migrate.ts';
import { describeDatabase, openDatabase } from './db/open-database.ts';
import { withLocalSecrets } from './local-secrets.ts';
import type { Logger } from './logger.ts';
import { createTelemetry, type TelemetryExtras } from './observability/telemetry.ts';
import { registry } from './task-registry.ts';
import { closeTaskServices, createTaskServices } from './task-services.ts';
import { type CloudClients, createCloudClients } from './tasks/cloud-clients.ts';
import { TaskEnqueuer } from './tasks/enqueue.ts';
import { OutboxRelay } from './tasks/outbox-relay.ts';
import { createPushAuthenticator, GOOGLE_ISSUERS, GOOGLE_JWKS_URL } from './tasks/push-auth.ts';
import { formatChanges, syncQueues } from './tasks/queue-sync.ts';
import { syncSchedules } from './tasks/schedule-sync.ts';
import { emulatorAddress, enqueueTarget } from './tasks/target.ts';
import { TaskEvents } from './tasks/task-events.ts';

export interface Service {
  readonly app: FastifyInstance;
  readonly db: Db;
  readonly config: Config;
  /** The URL the HTTP server listens on. */
  readonly url: string;
  readonly enqueuer: TaskEnqueuer;
  readonly relay: OutboxRelay;
  readonly clients: CloudClients;
  readonly events: TaskEvents;
  /** The embedded emulator, when this process runs one. */
  readonly emulator: Emulator | undefined;
  /** Stops accepting, lets in-flight requests finish, closes the emulator and the database. Idempotent. */
  close(): Promise<void>;
  /** Adds a step that close() runs first (before the HTTP server stops). */
  onClose(step: () => Promise<void>): void;
}

export interface StartOptions {
  logger: Logger;
  clock?: Clock;
  /** Span processors and metric readers of a test's own, beside what the config exports to. */
  telemetry?: TelemetryExtras;
}

/** Who signs the tokens of pushed tasks: Google in cloud mode, an emulator locally. */
function oidcIssuer(config: Config, emulator: Emulator | undefined): { issuers: string[]; jwksUrl: string } {
  if (config.tasks.backend === 'cloud') return { issuers: GOOGLE_ISSUERS, jwksUrl: GOOGLE_JWKS_URL };
  const issuer =
    config.tasks.oidcIssuer ??
    emulator?.issuer ??
    `http://${(config.tasks.emulatorHost ?? '127.0.0.1').replace(/:\d+$/, '')}:${config.tasks.emulatorHttpPort}`;
  return { issuers: [issuer], jwksUrl: emulator?.jwksUri ?? `${issuer}/jwks` };
}

export async function startService(rawConfig: Config, options: StartOptions): Promise<Service> {
  const { logger } = options;
  const config = withLocalSecrets(rawConfig);
  const clock = options.clock ?? systemClock;
  const cleanup: Array<() => Promise<unknown>> = [];
  const db = await openDatabase(databaseFor(config), {
    onIdleClientError: (err) => logger.warn({ err }, 'an idle database connection failed; the pool opens a new one'),
  });
  cleanup.push(() => db.close());
  try {
    // Closed after the HTTP server (the last spans are sent) and before the database.
    const telemetry = await createTelemetry(config.observability, config.tasks.projectId, options.telemetry);
    cleanup.unshift(() => telemetry.shutdown());
    telemetry.metrics.observeOutboxDepth(async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_outbox');
      return rows[0]?.n ?? 0;
    });
    const result = await migrate(db, undefined, (name, ms) =>
      logger.info({ migration: name, ms: Math.round(ms) }, `applied migration ${name}`),
    );
    logger.debug({ alreadyApplied: result.alreadyApplied }, 'migrations up to date');

    let emulator: Emulator | undefined;
    if (config.tasks.backend === 'emulator' && !config.tasks.emulatorHost) {
      const { startEmulator } = await import('@backend/cloud-tasks-emulator');
      const emulatorLog = logger.child({ component: 'emulator' });
      emulator = await startEmulator({
        dataDir: `${config.dataDir}/emulator`,
        grpcPort: config.tasks.emulatorGrpcPort,
        httpPort: config.tasks.emulatorHttpPort,
        log: (level, message, data) => emulatorLog[level](data ?? {}, message),
      });
      cleanup.unshift(() => emulator!.close());
    }
    const clients = createCloudClients({
      emulator: emulator?.grpcAddress ?? emulatorAddress(config),
      projectId: config.tasks.projectId,
    });
    cleanup.unshift(() => clients.close());

    const target = enqueueTarget(config);
    let relay: OutboxRelay | undefined;
    const enqueuer = new TaskEnqueuer({
      client: clients.tasks,
      registry,
      target,
      clock,
      log: logger.child({ component: 'enqueue' }),
      onOutboxCommit: () => relay?.kick(),
    });
    relay = new OutboxRelay({ db, enqueuer, log: logger.child({ component: 'outbox' }), clock });
    cleanup.unshift(() => relay.stop());
    const events = new TaskEvents();
    const queueToProbe = clients.tasks.queuePath(config.tasks.projectId, config.tasks.location, 'maintenance');
    const services = createTaskServices(config, {
      healthProbes: [
        {
          name: 'queue backend',
          critical: false,
          check: async () => {
            await clients.tasks.getQueue({ name: queueToProbe }, { timeout: 5_000 });
          },
        },
      ],
    });
    cleanup.unshift(() => closeTaskServices(services));
    const issuer = oidcIssuer(config, emulator);
    const app = await buildApp({
      config,
      db,
      logger,
      clock,
      registry,
      pushAuth: createPushAuthenticator({
        mode: config.tasks.auth,
        audience: config.tasks.oidcAudience,
        invokerEmail: config.tasks.invokerServiceAccount,
        secret: config.tasks.secret,
        issuers: issuer.issuers,
        jwksUrl: issuer.jwksUrl,
        clock,
      }),
      enqueue: enqueuer.enqueue,
      services,
      events,
      backend: { enqueuer, clients, target },
      telemetry,
    });
    cleanup.unshift(() => app.close());
    await app.listen({ port: config.port, host: config.host });

    // Locally the service owns its emulator's queues and jobs; in Google Cloud, syncing them is a
    // deploy step (`backend queues sync`, `backend schedules sync`), never a side effect of a start.
    if (config.tasks.backend === 'emulator') {
      const queues = await syncQueues(clients.tasks, target, [...registry.queues.values()], { dryRun: false });
      const jobs = await syncSchedules(clients.scheduler, target, registry.schedules, { dryRun: false });
      logger.debug(
        { queues: formatChanges('queue', queues, false), jobs: formatChanges('job', jobs, false) },
        'synced',
      );
    }
    relay.start();
    relay.kick(); // whatever a previous process committed to the outbox and did not send

    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host}:${port}`;
    logger.info(
      {
        url,
        database: describeDatabase(config.database),
        tasks: emulator ? emulator.grpcAddress : emulatorAddress(config),
      },
      `listening on ${url}`,
    );
    let closing: Promise<void> | undefined;
    return {
      app,
      db,
      config,
      url,
      enqueuer,
      relay,
      clients,
      events,
      emulator,
      onClose: (step) => {
        cleanup.unshift(step);
      },
      close: () => {
        closing ??= (async () => {
          for (const step of cleanup) await step().catch((err: unknown) => logger.warn({ err }, 'while closing'));
        })();
        return closing;
      },
    };
  } catch (err) {
    for (const step of cleanup) await step().catch(() => {});
    throw err;
  }
}

/**
 * Closes the service on SIGTERM/SIGINT within Cloud Run's 10-second grace period: the server stops
 * accepting, in-flight requests finish, the database closes; past the timeout the process exits 1.
 */
export function closeOnSignals(service: Service, logger: Logger, timeoutMs: number): void {
  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ signal }, `received ${signal}, shutting down`);
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    service.close().then(
      () => {
        logger.info('shut down cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

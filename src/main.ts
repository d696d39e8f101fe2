// The composition root: config → adapters → buildApp → listen, and a graceful close on SIGTERM.
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import type { Db } from './db/db.ts';
import { migrate } from './db/migrate.ts';
import { describeDatabase, openDatabase } from './db/open-database.ts';
import { withLocalSecrets } from './local-secrets.ts';
import type { Logger } from './logger.ts';
import { registry } from './task-registry.ts';
import type { Enqueue } from './tasks/define-task.ts';
import { createPushAuthenticator, GOOGLE_ISSUERS, GOOGLE_JWKS_URL } from './tasks/push-auth.ts';
import { TaskEvents } from './tasks/task-events.ts';

export interface Service {
  readonly app: FastifyInstance;
  readonly db: Db;
  readonly config: Config;
  /** The URL the HTTP server listens on. */
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish, closes the database. Idempotent. */
  close(): Promise<void>;
}

export interface StartOptions {
  logger: Logger;
  clock?: Clock;
}

export async function startService(rawConfig: Config, options: StartOptions): Promise<Service> {
  const { logger } = options;
  const config = withLocalSecrets(rawConfig);
  const db = await openDatabase(config.database);
  let app: FastifyInstance | undefined;
  try {
    const result = await migrate(db, undefined, (name, ms) =>
      logger.info({ migration: name, ms: Math.round(ms) }, `applied migration ${name}`),
    );
    logger.debug({ alreadyApplied: result.alreadyApplied }, 'migrations up to date');
    const clock = options.clock ?? systemClock;
    const issuer = oidcIssuer(config);
    app = await buildApp({
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
      enqueue: notWiredEnqueue,
      services: { healthProbes: [] },
      events: new TaskEvents(),
    });
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await app?.close().catch(() => {});
    await db.close().catch(() => {});
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host}:${port}`;
  logger.info({ url, database: describeDatabase(config.database) }, `listening on ${url}`);

  const server = app;
  let closing: Promise<void> | undefined;
  return {
    app: server,
    db,
    config,
    url,
    close: () => {
      closing ??= (async () => {
        try {
          await server.close();
        } finally {
          await db.close();
        }
      })();
      return closing;
    },
  };
}

/** Who signs the tokens of pushed tasks: Google in cloud mode, the emulator locally. */
function oidcIssuer(config: Config): { issuers: string[]; jwksUrl: string } {
  if (config.tasks.backend === 'cloud') return { issuers: GOOGLE_ISSUERS, jwksUrl: GOOGLE_JWKS_URL };
  const issuer = 'http://127.0.0.1:8124';
  return { issuers: [issuer], jwksUrl: `${issuer}/jwks` };
}

const notWiredEnqueue: Enqueue = async () => {
  throw new Error('enqueue is not wired yet');
};

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

// What a command works with. Run in a terminal, it opens its own database and clients; run inside
// `backend serve` (the control channel), it borrows the service's, because embedded PGlite lets
// only one process open its data directory, and the service knows its own emulator's ports.
// Everything here is loaded on first use: a command that only reads the database never loads the
// gRPC clients or the task registry, and `--help` loads none of it.
import { createRequire } from 'node:module';
import { type Clock, systemClock } from '../clock.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db/db.ts';
import type { Logger } from '../logger.ts';
import type { Service } from '../main.ts';
import type { CloudClients } from '../tasks/cloud-clients.ts';
import type { TaskEnqueuer } from '../tasks/enqueue.ts';
import type { TaskRegistry } from '../tasks/registry.ts';
import { emulatorAddress, enqueueTarget } from '../tasks/target.ts';
import { CliError } from './cli-errors.ts';
import { checkTaskBackend } from './task-backend-check.ts';

const require = createRequire(import.meta.url);

export type ContextFactory = () => CommandContext;

export interface CommandContext {
  readonly config: Config;
  readonly registry: TaskRegistry;
  readonly clock: Clock;
  /** Writes a line (or block) of the command's output. */
  out(text: string): void;
  db(): Promise<Db>;
  /**
   * The Cloud Tasks and Scheduler clients, once the task backend has answered a connection: a
   * command that talks to it calls this (or enqueuer()) first, so an unreachable backend is one
   * line within seconds (task-backend-check.ts), not a minute of gRPC retries.
   */
  taskBackend(): Promise<CloudClients>;
  enqueuer(): Promise<TaskEnqueuer>;
  close(): Promise<void>;
}

/** The config (validated) and a logger, for the commands that need no more (migrate, serve). */
export async function configAndLogger(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: Config; logger: Logger }> {
  const [{ loadConfig }, { createLogger }] = await Promise.all([import('../config.ts'), import('../logger.ts')]);
  const config = loadConfig(env);
  return { config, logger: createLogger({ level: config.log.level, format: config.log.format }) };
}

/** The data directory is held by a running `backend serve`: run the command there instead. */
export class DelegateToServiceError extends Error {
  override readonly name = 'DelegateToServiceError';
}

/** The task registry, loaded on first use (it imports every task module). */
export function loadRegistry(): TaskRegistry {
  return (require('../task-registry.ts') as typeof import('../task-registry.ts')).registry;
}

export function localContext(config: Config, out: (text: string) => void): CommandContext {
  let db: Promise<Db> | undefined;
  let clients: Promise<CloudClients> | undefined;
  let made: CloudClients | undefined;
  let enqueuer: Promise<TaskEnqueuer> | undefined;
  const ctx: CommandContext = {
    config,
    get registry() {
      return loadRegistry();
    },
    clock: systemClock,
    out,
    db() {
      db ??= openChecked(config);
      return db;
    },
    taskBackend() {
      clients ??= (async () => {
        const emulator = emulatorAddress(config);
        await checkTaskBackend(emulator);
        const { createCloudClients } = await import('../tasks/cloud-clients.ts');
        made = createCloudClients({ emulator, projectId: config.tasks.projectId });
        return made;
      })();
      return clients;
    },
    enqueuer() {
      enqueuer ??= (async () => {
        const tasks = (await ctx.taskBackend()).tasks;
        const [{ TaskEnqueuer }, { createLogger }] = await Promise.all([
          import('../tasks/enqueue.ts'),
          import('../logger.ts'),
        ]);
        return new TaskEnqueuer({
          client: tasks,
          registry: loadRegistry(),
          target: enqueueTarget(config),
          clock: systemClock,
          // The command reports a failure itself, in one line; the enqueuer's retry warnings are noise here.
          log: createLogger({ level: 'silent', format: config.log.format }),
        });
      })();
      return enqueuer;
    },
    async close() {
      await made?.close();
      await (await db?.catch(() => undefined))?.close();
    },
  };
  return ctx;
}

async function openChecked(config: Config): Promise<Db> {
  const [{ databaseFor }, { DataDirInUseError }, { pendingMigrations }, { describeDatabase, openDatabase }] =
    await Promise.all([
      import('../config.ts'),
      import('../db/db.ts'),
      import('../db/migrate.ts'),
      import('../db/open-database.ts'),
    ]);
  let opened: Db;
  try {
    opened = await openDatabase(databaseFor(config));
  } catch (err) {
    throw err instanceof DataDirInUseError ? new DelegateToServiceError(err.message) : err;
  }
  const pending = await pendingMigrations(opened);
  if (pending.length > 0) {
    await opened.close();
    throw new CliError(
      `${describeDatabase(config.database)} is missing migrations (${pending.join(', ')}): run \`npx backend migrate\` or \`npm start\` first`,
    );
  }
  return opened;
}

export function serviceContext(service: Service, out: (text: string) => void): CommandContext {
  return {
    config: service.config,
    get registry() {
      return loadRegistry();
    },
    clock: systemClock,
    out,
    db: async () => service.db,
    taskBackend: async () => service.clients,
    enqueuer: async () => service.enqueuer,
    close: async () => {},
  };
}

// What a command works with. Run in a terminal, it opens its own database and clients; run inside
// `backend serve` (the control channel below), it borrows the service's, because embedded PGlite
// lets only one process open its data directory.
import { type Clock, systemClock } from '../clock.ts';
import { type Config, databaseFor } from '../config.ts';
import type { Db } from '../db/db.ts';
import { DataDirInUseError } from '../db/db.ts';
import { pendingMigrations } from '../db/migrate.ts';
import { describeDatabase, openDatabase } from '../db/open-database.ts';
import { createLogger } from '../logger.ts';
import type { Service } from '../main.ts';
import { emulatorAddress, enqueueTarget } from '../main.ts';
import { registry } from '../task-registry.ts';
import { type CloudClients, createCloudClients } from '../tasks/cloud-clients.ts';
import { TaskEnqueuer } from '../tasks/enqueue.ts';
import type { TaskRegistry } from '../tasks/registry.ts';
import { CliError } from './cli-context.ts';

export type ContextFactory = () => CommandContext;

export interface CommandContext {
  readonly config: Config;
  readonly registry: TaskRegistry;
  readonly clock: Clock;
  /** Writes a line (or block) of the command's output. */
  out(text: string): void;
  db(): Promise<Db>;
  clients(): CloudClients;
  enqueuer(): TaskEnqueuer;
  close(): Promise<void>;
}

/** The data directory is held by a running `backend serve`: run the command there instead. */
export class DelegateToServiceError extends Error {}

export function localContext(config: Config, out: (text: string) => void): CommandContext {
  let db: Promise<Db> | undefined;
  let clients: CloudClients | undefined;
  let enqueuer: TaskEnqueuer | undefined;
  const ctx: CommandContext = {
    config,
    registry,
    clock: systemClock,
    out,
    db() {
      db ??= openDatabase(databaseFor(config)).then(
        async (opened) => {
          const pending = await pendingMigrations(opened);
          if (pending.length > 0) {
            await opened.close();
            throw new CliError(
              `${describeDatabase(config.database)} is missing migrations (${pending.join(', ')}): run \`npx backend migrate\` or \`npm start\` first`,
            );
          }
          return opened;
        },
        (err: unknown) => {
          throw err instanceof DataDirInUseError ? new DelegateToServiceError(err.message) : err;
        },
      );
      return db;
    },
    clients() {
      clients ??= createCloudClients({ emulator: emulatorAddress(config), projectId: config.tasks.projectId });
      return clients;
    },
    enqueuer() {
      enqueuer ??= new TaskEnqueuer({
        client: ctx.clients().tasks,
        registry,
        target: enqueueTarget(config),
        clock: systemClock,
        // The command reports a failure itself, in one line; the enqueuer's retry warnings are noise here.
        log: createLogger({ level: 'silent', format: config.log.format }),
      });
      return enqueuer;
    },
    async close() {
      await clients?.close();
      await (await db?.catch(() => undefined))?.close();
    },
  };
  return ctx;
}

export function serviceContext(service: Service, out: (text: string) => void): CommandContext {
  return {
    config: service.config,
    registry,
    clock: systemClock,
    out,
    db: async () => service.db,
    clients: () => service.clients,
    enqueuer: () => service.enqueuer,
    close: async () => {},
  };
}

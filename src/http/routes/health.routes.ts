// GET /healthz (liveness) and GET /readyz (readiness: the database answers, migrations applied).
import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/db.ts';
import { pendingMigrations } from '../../db/migrate.ts';
import { errorBody } from '../../errors.ts';

export interface HealthRouteDeps {
  db: Db;
  /** How long the database may take to answer before the service reports not ready. (Default: 2000 ms) */
  readinessTimeoutMs?: number;
}

export function healthRoutes(app: FastifyInstance, deps: HealthRouteDeps): void {
  const timeoutMs = deps.readinessTimeoutMs ?? 2000;
  // Migrations only ever get applied, so once none is pending the check need not run again.
  let migrationsDone = false;

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    const started = performance.now();
    try {
      await withTimeout(deps.db.query('SELECT 1'), timeoutMs);
      if (!migrationsDone) {
        const pending = await withTimeout(pendingMigrations(deps.db), timeoutMs);
        if (pending.length > 0) {
          // The names tell an anonymous caller which version runs: they go to our log, not the answer.
          request.log.warn({ pendingMigrations: pending }, 'not ready: migrations pending');
          return reply.code(503).send(errorBody('NOT_READY', 'Migrations pending; run `backend migrate`.'));
        }
        migrationsDone = true;
      }
    } catch (err) {
      request.log.warn({ err }, 'readiness check failed');
      const reason = err instanceof TimeoutError ? `no answer within ${timeoutMs} ms` : 'the query failed';
      return reply.code(503).send(errorBody('NOT_READY', `Database not ready: ${reason}.`));
    }
    return { status: 'ready', database: { kind: deps.db.kind, latencyMs: round(performance.now() - started) } };
  });
}

class TimeoutError extends Error {}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError()), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

// PostgreSQL (node-postgres pool) behind the Db port. Cloud SQL sockets work through the URL:
// postgres://user:pass@/db?host=/cloudsql/PROJECT:REGION:INSTANCE
import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.ts';
import type { Db, QueryResult, Tx } from './db.ts';

// int8 (count(*), bigserial) as a JS number: every int8 this service stores fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

export interface PostgresOptions {
  url: string;
  /** Connections in the pool. (Default: 10) */
  max?: number;
  /** How long to wait for a connection before the call fails as unavailable. (Default: 5000 ms) */
  connectionTimeoutMs?: number;
  applicationName?: string;
}

// SQLSTATE classes that mean "the server is not there for us right now", not "the SQL is wrong".
const UNAVAILABLE_SQLSTATE = /^(08|57P0[123]|53300)/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  if (code && (UNAVAILABLE_ERRNO.has(code) || UNAVAILABLE_SQLSTATE.test(code))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    err.message,
  );
}

const mapError = (err: unknown): unknown => (isUnavailable(err) ? new DatabaseUnavailableError(err) : err);

export function openPostgres(options: PostgresOptions): Db & { pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    application_name: options.applicationName ?? 'backend',
  });
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', () => {});
  const script = async (c: pg.Pool | pg.PoolClient, sql: string) => {
    try {
      await c.query(sql); // simple protocol: several statements allowed, one result per statement
    } catch (err) {
      throw mapError(err);
    }
  };
  const run = async <R>(c: pg.Pool | pg.PoolClient, text: string, values?: readonly unknown[]) => {
    try {
      const r = await c.query(text, values as unknown[] | undefined);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? r.rows.length } satisfies QueryResult<R>;
    } catch (err) {
      throw mapError(err);
    }
  };
  return {
    kind: 'postgres',
    pool,
    query: (text, values) => run(pool, text, values),
    exec: (sql) => script(pool, sql),
    async transaction(fn) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw mapError(err);
      }
      let broken: unknown;
      try {
        await run(client, 'BEGIN');
        const tx: Tx = {
          inTransaction: true,
          query: (text, values) => run(client, text, values),
          exec: (sql) => script(client, sql),
        };
        const result = await fn(tx);
        await run(client, 'COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr;
        }
        throw err;
      } finally {
        // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    close: () => pool.end(),
  };
}

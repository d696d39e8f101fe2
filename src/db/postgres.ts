// PostgreSQL (node-postgres pool) behind the Db port. Cloud SQL sockets work through the URL:
// postgres://user:pass@/db?host=/cloudsql/PROJECT:REGION:INSTANCE
import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.ts';
import type { Db, QueryResult, Tx } from './db.ts';
import { isDatabaseUnavailable } from './unavailable.ts';

// int8 (count(*), bigserial) as a JS number: every int8 this service stores fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

export interface PostgresOptions {
  url: string;
  /** Connections in the pool. (Default: 10) */
  max?: number;
  /** How long to wait for a connection before the call fails as unavailable. (Default: 5000 ms) */
  connectionTimeoutMs?: number;
  applicationName?: string;
  /** Told when an idle pooled connection loses its server (the service logs it at warn). */
  onIdleClientError?: (err: Error) => void;
}

/** A connection failure, server shutdown or pool timeout: the call can succeed later (see unavailable.ts). */
export const isUnavailable = isDatabaseUnavailable;

const mapError = (err: unknown): unknown => (isUnavailable(err) ? new DatabaseUnavailableError(err) : err);

export class TransactionClosedError extends Error {
  constructor() {
    super('the transaction is already committed or rolled back');
    this.name = 'TransactionClosedError';
  }
}

export function openPostgres(options: PostgresOptions): Db & { pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    application_name: options.applicationName ?? 'backend',
  });
  // An idle client that loses its server emits here; without a listener the process would crash.
  // pg-pool has already dropped that client, and it drops any client whose socket failed while
  // lent out (released with an error, or no longer queryable): a new call opens a new connection,
  // so the pool recovers by itself once the server is back, with no restart. Nothing is lost, so
  // the error is only reported (a warning in the service's log), never thrown.
  pool.on('error', (err) => options.onIdleClientError?.(err));
  // A client can also fail while it is handed out: when PostgreSQL shuts down as a new connection
  // opens, its first ReadyForQuery and the FATAL 57P01 can come in one read, and pg emits the
  // error after pg-pool removed its idle listener but before transaction() (still awaiting
  // pool.connect()) attached its own: an unhandled 'error' that ended the process. So every client
  // keeps a listener for its whole life; the error still fails its queries (as unavailable), and
  // pg-pool drops a client that is no longer queryable when it is released.
  pool.on('connect', (client) => client.on('error', () => {}));
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
      // A lent-out client has no 'error' listener of the pool's: if its server goes away while
      // the transaction waits on something else (a handler's network call), pg emits 'error' on
      // it, which would crash the process. Keep the error; the next statement fails as unavailable,
      // and the client is destroyed, not returned to the pool.
      const onClientError = (err: Error) => {
        broken ??= err;
      };
      client.on('error', onClientError);
      let open = true;
      const onCommit: Array<() => void> = [];
      const beforeCommit: Array<() => Promise<void>> = [];
      try {
        await run(client, 'BEGIN');
        // A handler abandoned at its deadline may still hold this handle: once the transaction
        // is over, its statements must fail rather than run on a pooled connection someone else uses.
        const tx: Tx = {
          inTransaction: true,
          query: (text, values) => (open ? run(client, text, values) : Promise.reject(new TransactionClosedError())),
          exec: (sql) => (open ? script(client, sql) : Promise.reject(new TransactionClosedError())),
          afterCommit: (cb) => onCommit.push(cb),
          beforeCommit: (cb) => beforeCommit.push(cb),
        };
        const result = await fn(tx);
        for (let i = 0; i < beforeCommit.length; i++) await beforeCommit[i]!();
        open = false;
        await run(client, 'COMMIT');
        for (const cb of onCommit) cb();
        return result;
      } catch (err) {
        open = false;
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr;
        }
        throw err;
      } finally {
        open = false;
        client.removeListener('error', onClientError);
        // A client whose ROLLBACK failed (or whose connection failed) is in an unknown state:
        // destroy it rather than reuse it.
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    pressure: () => ({ waiting: pool.waitingCount, total: pool.totalCount, idle: pool.idleCount }),
    close: () => pool.end(),
  };
}

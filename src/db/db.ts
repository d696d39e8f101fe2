// The database port (pg-boss's one-function idea): query and transaction. Adapters: pglite.ts, postgres.ts.

export interface QueryResult<R> {
  rows: R[];
  /** Rows inserted, updated or deleted (or returned, for SELECT). */
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements with no parameters (migrations). */
  exec(script: string): Promise<void>;
}

/** A handle inside one transaction. Use it, never the Db, for every statement of the transaction. */
export interface Tx extends Queryable {
  readonly inTransaction: true;
  /** Runs fn once the transaction has committed (never after a rollback); errors are the callback's own. */
  afterCommit(fn: () => void): void;
  /**
   * Runs fn inside the transaction after the caller's work and before COMMIT (in registration
   * order); if it throws, the transaction rolls back. For writes collected along the way and
   * made in one statement (the outbox).
   */
  beforeCommit(fn: () => Promise<void>): void;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Runs fn in one transaction: COMMIT when it resolves, ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** A connection pool's load (PostgreSQL; PGlite has no pool): calls waiting for a connection. */
  pressure?(): { waiting: number; total: number; idle: number };
  close(): Promise<void>;
}

/** The embedded database's data directory is held by another live process (kept here, not in
 * pglite.ts, so that a command can recognise it without loading PGlite). */
export class DataDirInUseError extends Error {
  constructor(dir: string, pid: number) {
    super(
      `The embedded database in ${dir} is open in another process (pid ${pid}). ` +
        'Stop that process, or point DATABASE_URL at a PostgreSQL server to share the data.',
    );
    this.name = 'DataDirInUseError';
  }
}

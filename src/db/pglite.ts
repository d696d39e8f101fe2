// Embedded PostgreSQL (PGlite) behind the Db port.
//
// PGlite is one Postgres backend in this process: one connection, so statements and transactions
// are serialised (PGlite's own mutex). Two consequences the rest of the code relies on:
// - inside db.transaction(fn), use the tx handle only; calling db.query from inside fn waits for
//   the transaction that is waiting for it (a deadlock);
// - a failed statement inside a transaction poisons the connection until ROLLBACK, which
//   transaction() issues before rethrowing.
// Only one process may open a data directory: a pid file next to it refuses a second opener.
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { DataDirInUseError, type Db, type QueryResult, type Tx } from './db.ts';

export interface PgliteOptions {
  /** Directory of the database files; null keeps everything in memory. */
  dataDir: string | null;
  /** A dump made by dumpPgliteDataDir, loaded into a fresh in-memory database (fast test setup). */
  loadDataDir?: Blob;
}

export async function openPglite(options: PgliteOptions): Promise<Db & { raw: PGlite }> {
  let releaseLock = () => {};
  let pg: PGlite;
  if (options.dataDir) {
    const dir = resolve(options.dataDir);
    // PGlite creates its files world-writable (0666, whatever the umask): like PostgreSQL's own
    // data directory, ours is 0700 so that no other user reaches them. A parent we create ($DATA_DIR)
    // is 0700 too; an existing one is left as it is.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    releaseLock = lockDataDir(dir);
    try {
      pg = await PGlite.create(dir, { relaxedDurability: false });
    } catch (err) {
      releaseLock();
      throw err;
    }
  } else {
    pg = await PGlite.create(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {});
  }
  const run = async <R>(q: { query: PGlite['query'] }, text: string, values?: readonly unknown[]) => {
    const r = await q.query<R>(text, values as unknown[] | undefined);
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length } satisfies QueryResult<R>;
  };
  return {
    kind: 'pglite',
    raw: pg,
    query: (text, values) => run(pg, text, values),
    exec: async (script) => {
      await pg.exec(script);
    },
    transaction: async (fn) => {
      const onCommit: Array<() => void> = [];
      const beforeCommit: Array<() => Promise<void>> = [];
      const result = await pg.transaction(async (t) => {
        const tx: Tx = {
          inTransaction: true,
          query: (text, values) => run(t, text, values),
          exec: async (script) => {
            await t.exec(script);
          },
          afterCommit: (cb) => onCommit.push(cb),
          beforeCommit: (cb) => beforeCommit.push(cb),
        };
        const value = await fn(tx);
        for (let i = 0; i < beforeCommit.length; i++) await beforeCommit[i]!();
        return value;
      });
      for (const cb of onCommit) cb();
      return result;
    },
    async close() {
      try {
        if (!pg.closed) await pg.close();
      } finally {
        releaseLock();
      }
    },
  };
}

/** Serialises a database (uncompressed tarball) so tests can start from a migrated copy. */
export async function dumpPgliteDataDir(db: Db & { raw?: PGlite }): Promise<Blob> {
  if (!db.raw) throw new Error('not a PGlite database');
  return db.raw.dumpDataDir('none');
}

function lockDataDir(dir: string): () => void {
  const lockFile = join(dirname(dir), `${dir.split('/').pop()}.pid`);
  try {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    if (pid && pid !== process.pid && isAlive(pid)) throw new DataDirInUseError(dir, pid);
  } catch (err) {
    if (err instanceof DataDirInUseError) throw err;
    // no lock file, or a stale one: take it
  }
  writeFileSync(lockFile, String(process.pid));
  return () => rmSync(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Forward-only migrations: migrations/NNNN_name.sql applied in order, each in its own transaction.
//
// Every migration transaction first takes one advisory transaction lock, so two instances starting
// at once queue behind each other: the second finds the migration recorded and skips it. The
// record carries a checksum, so an applied file that was edited afterwards is refused, not ignored.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

// Any constant works; this one spells "migrate" so it is recognisable in pg_locks.
const MIGRATION_LOCK_KEY = 0x6d69677261746;

export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((file) => {
      const m = FILE_NAME.exec(file);
      if (!m) throw new MigrationError(`migrations/${file}: expected a name like 0001_init.sql`);
      const sql = readFileSync(`${dir}/${file}`, 'utf8');
      return { id: Number(m[1]), name: file, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
  migrations.forEach((m, i) => {
    if (m.id !== i + 1)
      throw new MigrationError(`migrations/${m.name}: expected number ${String(i + 1).padStart(4, '0')}`);
  });
  return migrations;
}

const CREATE_TABLE = `
  CREATE TABLE IF NOT EXISTS schema_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;

interface Applied {
  id: number;
  name: string;
  checksum: string;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: number;
}

/** Applies every pending migration. Safe to call from several processes at once. */
export async function migrate(
  db: Db,
  migrations: readonly Migration[] = loadMigrations(),
  onApplied: (name: string, ms: number) => void = () => {},
): Promise<MigrateResult> {
  // Fast path for every start after the first: one read, no locks, when nothing is pending.
  const recorded = await readApplied(db);
  if (recorded && migrations.every((m) => recorded.has(m.id))) {
    for (const m of migrations) assertUnchanged(recorded.get(m.id)!, m);
    return { applied: [], alreadyApplied: migrations.length };
  }
  const applied: string[] = [];
  let alreadyApplied = 0;
  for (const migration of migrations) {
    const started = performance.now();
    const done = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await tx.query(CREATE_TABLE);
      const { rows } = await tx.query<Applied>('SELECT id, name, checksum FROM schema_migrations WHERE id = $1', [
        migration.id,
      ]);
      const existing = rows[0];
      if (existing) {
        assertUnchanged(existing, migration);
        return false;
      }
      // Recorded first: a concurrent migrator blocked on the lock sees the row once this commits.
      await tx.query('INSERT INTO schema_migrations (id, name, checksum) VALUES ($1, $2, $3)', [
        migration.id,
        migration.name,
        migration.checksum,
      ]);
      await tx.exec(migration.sql);
      return true;
    });
    if (done) {
      applied.push(migration.name);
      onApplied(migration.name, performance.now() - started);
    } else {
      alreadyApplied++;
    }
  }
  return { applied, alreadyApplied };
}

/** What /readyz reports: the migrations this code expects that the database does not have yet. */
export async function pendingMigrations(
  db: Db,
  migrations: readonly Migration[] = loadMigrations(),
): Promise<string[]> {
  const recorded = await readApplied(db);
  return migrations.filter((m) => !recorded?.has(m.id)).map((m) => m.name);
}

/** The recorded migrations by id, or undefined when the table does not exist yet. */
async function readApplied(db: Db): Promise<Map<number, Applied> | undefined> {
  const { rows } = await db.query<{ exists: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS exists");
  if (!rows[0]?.exists) return undefined;
  const applied = await db.query<Applied>('SELECT id, name, checksum FROM schema_migrations');
  return new Map(applied.rows.map((r) => [r.id, r]));
}

function assertUnchanged(existing: Applied, migration: Migration): void {
  if (existing.checksum !== migration.checksum) {
    throw new MigrationError(
      `migrations/${migration.name} was changed after it was applied (recorded as ${existing.name}); ` +
        'migrations are forward-only: restore the file and add a new migration instead',
    );
  }
}

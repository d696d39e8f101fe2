import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { loadMigrations, MIGRATIONS_DIR, MigrationError, migrate, pendingMigrations } from '../../src/db/migrate.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { openPostgres } from '../../src/db/postgres.ts';
import { dumpSchema } from '../../src/db/schema-dump.ts';
import { createEmptyPostgresDb, createTestDb, testDbKind } from '../helpers/test-db.ts';

const committedSchema = readFileSync(new URL('../../schema.sql', import.meta.url), 'utf8');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A copy of migrations/ that a test may change. */
function migrationsCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  dirs.push(dir);
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  return dir;
}

/** An empty database of this run's engine, plus a way to open a second connection pool to it. */
async function emptyDb(): Promise<{ db: Db; second: () => Db; close: () => Promise<void> }> {
  if (testDbKind === 'postgres') {
    const db = await createEmptyPostgresDb();
    const others: Db[] = [];
    return {
      db,
      second: () => {
        const o = openPostgres({ url: db.url! });
        others.push(o);
        return o;
      },
      close: async () => {
        for (const o of others) await o.close();
        await db.close();
      },
    };
  }
  const db = await openPglite({ dataDir: null });
  return { db, second: () => db, close: () => db.close() };
}

describe(`migrations (${testDbKind})`, () => {
  test('the migrated schema equals the committed schema.sql', async () => {
    const db = await createTestDb();
    try {
      assert.equal(await dumpSchema(db), committedSchema);
      assert.deepEqual(await pendingMigrations(db), []);
    } finally {
      await db.close();
    }
  });

  test('two instances migrating the same empty database at once both succeed, each migration applied once', async () => {
    const { db, second, close } = await emptyDb();
    try {
      const [a, b] = await Promise.all([migrate(db), migrate(second())]);
      const all = loadMigrations().map((m) => m.name);
      assert.deepEqual([...a.applied, ...b.applied].sort(), all);
      assert.equal(a.alreadyApplied + b.alreadyApplied, all.length);
      assert.equal(await dumpSchema(db), committedSchema);
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      assert.equal(rows[0]!.n, all.length);
    } finally {
      await close();
    }
  });

  test('running again applies nothing', async () => {
    const db = await createTestDb();
    try {
      const again = await migrate(db);
      assert.deepEqual(again.applied, []);
      assert.equal(again.alreadyApplied, loadMigrations().length);
    } finally {
      await db.close();
    }
  });

  test('an applied migration edited afterwards is refused', async () => {
    const db = await createTestDb();
    const dir = migrationsCopy();
    writeFileSync(join(dir, '0001_init.sql'), `${readFileSync(join(dir, '0001_init.sql'), 'utf8')}\n-- edited\n`);
    try {
      await assert.rejects(migrate(db, loadMigrations(dir)), (err) => {
        assert.ok(err instanceof MigrationError);
        assert.match(err.message, /0001_init\.sql was changed after it was applied/);
        return true;
      });
    } finally {
      await db.close();
    }
  });

  test('a failing migration changes nothing and is not recorded', async () => {
    const db = await createTestDb();
    const dir = migrationsCopy();
    const next = String(loadMigrations().length + 1).padStart(4, '0');
    writeFileSync(join(dir, `${next}_broken.sql`), 'CREATE TABLE half_done (id int);\nSELECT no_such_function();\n');
    try {
      await assert.rejects(migrate(db, loadMigrations(dir)), /no_such_function/);
      const { rows } = await db.query<{ t: string | null }>("SELECT to_regclass('half_done')::text AS t");
      assert.equal(rows[0]!.t, null);
      assert.deepEqual(await pendingMigrations(db, loadMigrations(dir)), [`${next}_broken.sql`]);
    } finally {
      await db.close();
    }
  });

  test('file names must be numbered without gaps', () => {
    const gap = migrationsCopy();
    writeFileSync(join(gap, '0099_late.sql'), 'SELECT 1;');
    assert.throws(() => loadMigrations(gap), /0099_late\.sql: expected number/);
    const badName = migrationsCopy();
    writeFileSync(join(badName, 'add-things.sql'), 'SELECT 1;');
    assert.throws(() => loadMigrations(badName), /add-things\.sql: expected a name like 0001_init\.sql/);
  });
});

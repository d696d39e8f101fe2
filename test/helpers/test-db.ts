// A fresh, migrated database per test file: PGlite in memory (loaded from a migrated template dump)
// or, when TEST_DB=postgres, a PostgreSQL database cloned from a migrated template database.
// scripts/test.ts builds both templates once per run; run alone, a file builds what it needs.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { openPostgres } from '../../src/db/postgres.ts';

export type TestDbKind = 'pglite' | 'postgres';

export const testDbKind: TestDbKind = process.env.TEST_DB === 'postgres' ? 'postgres' : 'pglite';

export interface TestDb extends Db {
  /** For PostgreSQL: the URL of this test's own database (to open more connections to it). */
  readonly url: string | undefined;
}

/** A migrated database of the kind this run tests; close() drops it. */
export async function createTestDb(): Promise<TestDb> {
  if (testDbKind === 'postgres') {
    const template = process.env.TEST_PG_TEMPLATE;
    if (template) return clonePostgres(template);
    const db = await createEmptyPostgresDb();
    await migrate(db);
    return db;
  }
  const dump = process.env.TEST_PGLITE_TEMPLATE;
  const db = await openPglite({ dataDir: null, ...(dump ? { loadDataDir: new Blob([readFileSync(dump)]) } : {}) });
  if (!dump) await migrate(db);
  return Object.assign(db, { url: undefined });
}

export function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: it must name a PostgreSQL server for TEST_DB=postgres');
  return url;
}

export function databaseUrl(name: string): string {
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

// The test run's pid is in every name, so a run drops only what runs no longer alive left behind
// (two suites may share one PostgreSQL server).
const runPid = () => Number(process.env.TEST_RUN_PID ?? process.pid);
const freshName = () => `backend_test_${runPid()}_${randomBytes(6).toString('hex')}`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** An empty PostgreSQL database (no migrations), dropped on close(). */
export async function createEmptyPostgresDb(template = 'template0'): Promise<TestDb> {
  const name = freshName();
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  const url = databaseUrl(name);
  const db = openPostgres({ url, max: 20 });
  return {
    ...db,
    url,
    async close() {
      await db.close();
      await dropPostgresDb(name);
    },
  };
}

const clonePostgres = (template: string) => createEmptyPostgresDb(template);

export async function dropPostgresDb(name: string): Promise<void> {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

export async function createPostgresTemplate(name: string): Promise<void> {
  await admin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  });
  const db = openPostgres({ url: databaseUrl(name) });
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
}

/** Drops the test databases of runs no longer alive (a crash, a kill); never those of a run in progress. */
export async function dropLeftoverTestDbs(): Promise<number> {
  return admin(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'backend_test\\_%'",
    );
    const left = rows.filter((r) => {
      const pid = Number(/^backend_test_(?:template_)?(\d+)_?/.exec(r.datname)?.[1]);
      return !(pid > 0 && pid !== process.pid && alive(pid));
    });
    for (const r of left) await c.query(`DROP DATABASE IF EXISTS ${r.datname} WITH (FORCE)`);
    return left.length;
  });
}

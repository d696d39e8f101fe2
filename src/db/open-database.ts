// Picks the database adapter from configuration. Only main.ts, cli/ and test helpers call it.
import type { DatabaseConfig } from '../config.ts';
import type { Db } from './db.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';

export async function openDatabase(config: DatabaseConfig): Promise<Db> {
  return config.kind === 'postgres' ? openPostgres({ url: config.url }) : openPglite({ dataDir: config.dataDir });
}

export function describeDatabase(config: DatabaseConfig): string {
  if (config.kind === 'pglite')
    return config.dataDir ? `embedded PGlite in ${config.dataDir}` : 'embedded PGlite in memory';
  const u = new URL(config.url);
  const socket = u.searchParams.get('host');
  return `PostgreSQL ${socket ?? u.host}${u.pathname}`;
}

// Picks the database adapter from configuration. Only main.ts, cli/ and test helpers call it.
import type { DatabaseConfig } from '../config.ts';
import type { Db } from './db.ts';

export interface OpenOptions {
  /** Told when an idle PostgreSQL connection loses its server; the pool reconnects by itself. */
  onIdleClientError?: (err: Error) => void;
}

/** Loads only the adapter in use: start-up should not pay for the engine it does not run. */
export async function openDatabase(config: DatabaseConfig, options: OpenOptions = {}): Promise<Db> {
  if (config.kind === 'postgres') {
    const { openPostgres } = await import('./postgres.ts');
    return openPostgres({
      url: config.url,
      ...(options.onIdleClientError ? { onIdleClientError: options.onIdleClientError } : {}),
    });
  }
  const { openPglite } = await import('./pglite.ts');
  return openPglite({ dataDir: config.dataDir });
}

export function describeDatabase(config: DatabaseConfig): string {
  if (config.kind === 'pglite')
    return config.dataDir ? `embedded PGlite in ${config.dataDir}` : 'embedded PGlite in memory';
  const u = new URL(config.url);
  const socket = u.searchParams.get('host');
  return `PostgreSQL ${socket ?? u.host}${u.pathname}`;
}

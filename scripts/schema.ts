// `npm run schema:dump` writes schema.sql from a freshly migrated embedded database;
// `npm run schema:check` fails when schema.sql and the migrations disagree (CI's drift check).
import { readFileSync, writeFileSync } from 'node:fs';
import { migrate } from '../src/db/migrate.ts';
import { openPglite } from '../src/db/pglite.ts';
import { dumpSchema } from '../src/db/schema-dump.ts';

const SCHEMA_FILE = new URL('../schema.sql', import.meta.url);
const mode = process.argv[2];
if (mode !== 'dump' && mode !== 'check') {
  console.error('usage: node scripts/schema.ts dump|check');
  process.exit(2);
}

const db = await openPglite({ dataDir: null });
await migrate(db);
const fresh = await dumpSchema(db);
await db.close();

if (mode === 'dump') {
  writeFileSync(SCHEMA_FILE, fresh);
  console.log('schema.sql written');
} else {
  let committed = '';
  try {
    committed = readFileSync(SCHEMA_FILE, 'utf8');
  } catch {}
  if (committed !== fresh) {
    console.error('schema.sql is out of date with migrations/: run `npm run schema:dump` and commit it.');
    process.exit(1);
  }
  console.log('schema.sql matches the migrations');
}

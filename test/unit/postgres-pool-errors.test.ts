// An idle pooled connection that loses its server is reported, not swallowed, and never crashes the process.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPostgres } from '../../src/db/postgres.ts';

test("an idle client's error reaches onIdleClientError, and without one the pool still keeps the process alive", async () => {
  const seen: Error[] = [];
  const db = openPostgres({ url: 'postgres://nobody@127.0.0.1:1/none', onIdleClientError: (err) => seen.push(err) });
  const lost = new Error('terminating connection due to administrator command');
  db.pool.emit('error', lost);
  assert.deepEqual(seen, [lost]);
  await db.close();

  const quiet = openPostgres({ url: 'postgres://nobody@127.0.0.1:1/none' });
  assert.doesNotThrow(() => quiet.pool.emit('error', lost));
  await quiet.close();
});

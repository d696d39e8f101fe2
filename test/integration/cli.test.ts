import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort, runBackend, startBackend } from '../helpers/cli-process.ts';
import { createTestDb, testDbKind } from '../helpers/test-db.ts';

const dataDirs: string[] = [];
const tempDataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'backend-cli-'));
  dataDirs.push(d);
  return d;
};
after(() => {
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

describe('backend command line: usage', { skip: testDbKind === 'postgres' && 'database-independent' }, () => {
  test('--help lists the commands and exits 0; every command has --help', async () => {
    const r = await runBackend(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /serve/);
    assert.match(r.stdout, /migrate/);
    const m = await runBackend(['migrate', '--help']);
    assert.equal(m.code, 0);
    assert.match(m.stdout, /Usage: backend migrate/);
  });

  test('an unknown command or option is bad usage: exit 2', async () => {
    const r = await runBackend(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
    assert.equal((await runBackend(['serve', '--bogus'])).code, 2);
    assert.equal((await runBackend([])).code, 2);
  });

  test('a bad variable stops the process with exit 1 and one line naming it, no stack trace', async () => {
    const r = await runBackend(['serve'], { PORT: 'abc' });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      'backend: invalid configuration: PORT="abc" is not valid: expected an integer from 1 to 65535',
    );
    assert.ok(!r.stderr.includes('    at '));
  });

  test('migrate applies pending migrations once, then reports up to date', async () => {
    const dir = tempDataDir();
    const first = await runBackend(['migrate'], { DATA_DIR: dir });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied 0001_init\.sql/);
    const second = await runBackend(['migrate'], { DATA_DIR: dir });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /up to date/);
  });
});

describe(`backend serve (${testDbKind})`, () => {
  test('serves /healthz and /readyz, then shuts down cleanly on SIGTERM', async () => {
    const port = await freePort();
    const env: Record<string, string> = { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: tempDataDir() };
    const db = testDbKind === 'postgres' ? await createTestDb() : undefined;
    if (db?.url) env.DATABASE_URL = db.url;
    const service = startBackend(['serve'], env);
    try {
      await service.waitForLine(/"listening on http:\/\/127\.0\.0\.1:\d+"/);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(((await ready.json()) as { database: { kind: string } }).database.kind, testDbKind);
      service.child.kill('SIGTERM');
      assert.equal(await service.exit, 0);
      assert.match(service.output(), /"shut down cleanly"/);
    } finally {
      service.child.kill('SIGKILL');
      await db?.close();
    }
  });

  test('a second process cannot open the same embedded database', { skip: testDbKind === 'postgres' }, async () => {
    const dir = tempDataDir();
    const port = await freePort();
    const first = startBackend(['serve'], { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dir });
    try {
      await first.waitForLine(/"listening on/);
      const second = await runBackend(['migrate'], { DATA_DIR: dir });
      assert.equal(second.code, 1);
      assert.match(second.stderr, /is open in another process \(pid \d+\)/);
    } finally {
      first.child.kill('SIGTERM');
      await first.exit;
    }
  });
});

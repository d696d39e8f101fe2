import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openPostgres } from '../../src/db/postgres.ts';
import { dumpSchema } from '../../src/db/schema-dump.ts';
import { freePort, runBackend, servicePorts, startBackend } from '../helpers/cli-process.ts';
import { createEmptyPostgresDb, createTestDb, testDbKind } from '../helpers/test-db.ts';

const dataDirs: string[] = [];
const tempDataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'backend-cli-'));
  dataDirs.push(d);
  return d;
};
after(() => {
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

const ports = servicePorts;

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

  test('commands say what to do when the database is not migrated or the task backend is not running', async () => {
    const env = { DATA_DIR: tempDataDir(), EMULATOR_GRPC_PORT: String(await freePort()) };
    const runs = await runBackend(['runs', 'list'], env);
    assert.equal(runs.code, 1);
    assert.match(
      runs.stderr,
      /is missing migrations \(0001_init\.sql.*\): run `npx backend migrate` or `npm start` first/,
    );
    const enqueue = await runBackend(['enqueue', 'health.check', '{}'], env);
    assert.equal(enqueue.code, 1);
    assert.equal(
      enqueue.stderr.trim(),
      `backend: cannot reach the task backend at 127.0.0.1:${env.EMULATOR_GRPC_PORT}: is \`npm start\` (or \`npx backend emulator\`) running?`,
    );
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
    const env: Record<string, string> = { ...(await ports()), DATA_DIR: tempDataDir() };
    const db = testDbKind === 'postgres' ? await createTestDb() : undefined;
    if (db?.url) env.DATABASE_URL = db.url;
    const service = startBackend(['serve'], env);
    try {
      await service.waitForLine(/"listening on http:\/\/127\.0\.0\.1:\d+"/);
      const port = env.PORT;
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
    const first = startBackend(['serve'], { ...(await ports()), DATA_DIR: dir });
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

describe('a second terminal while npm start runs', {
  skip: testDbKind === 'postgres' && 'embedded database only',
}, () => {
  test('enqueue goes through the emulator and the push route; runs list, show and errors work', async () => {
    const env = { ...(await ports()), DATA_DIR: tempDataDir() };
    const service = startBackend(['serve'], env);
    try {
      await service.waitForLine(/"listening on/);
      const enqueued = await runBackend(['enqueue', 'health.check', '{}'], env);
      assert.equal(enqueued.code, 0, enqueued.stderr);
      assert.match(
        enqueued.stdout,
        /^enqueued: projects\/local\/locations\/us-central1\/queues\/maintenance\/tasks\/[0-9a-f]{32}-health-check$/m,
      );
      // The push arrives at the service; its one log line says how it ended.
      await service.waitForLine(/"message":"POST \/tasks\/health\.check 200"/);
      const list = await runBackend(['runs', 'list'], env);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^1\s+health\.check\s+succeeded\s+1\s/m);
      const dead = await runBackend(['runs', 'list', '--status', 'dead'], env);
      assert.equal(dead.stdout.trim(), 'no runs');
      const show = await runBackend(['runs', 'show', '1'], env);
      assert.equal(JSON.parse(show.stdout).status, 'succeeded');
      const unknown = await runBackend(['enqueue', 'health.chek', '{}'], env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /No task named "health\.chek"\. Known tasks: .*health\.check/);
      const badJson = await runBackend(['enqueue', 'health.check', '{nope'], env);
      assert.equal(badJson.code, 2);
      const badStatus = await runBackend(['runs', 'list', '--status', 'lost'], env);
      assert.equal(badStatus.code, 2);
      const missing = await runBackend(['runs', 'show', '999'], env);
      assert.equal(missing.code, 1);
      assert.match(missing.stdout + missing.stderr, /no run with id 999/);
    } finally {
      service.child.kill('SIGTERM');
      await service.exit;
    }
  });
});

describe('two instances deploying at once', { skip: testDbKind !== 'postgres' && 'PostgreSQL only' }, () => {
  test('two `backend migrate` processes on one empty database both succeed; the schema equals schema.sql', async () => {
    const db = await createEmptyPostgresDb();
    try {
      const env = { DATABASE_URL: db.url!, DATA_DIR: tempDataDir() };
      const [a, b] = await Promise.all([runBackend(['migrate'], env), runBackend(['migrate'], env)]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const applied = `${a.stdout}${b.stdout}`.match(/applied \d{4}_\w+\.sql/g) ?? [];
      assert.equal(applied.length, new Set(applied).size, 'a migration was applied twice');
      const check = openPostgres({ url: db.url! });
      try {
        assert.equal(await dumpSchema(check), readFileSync(new URL('../../schema.sql', import.meta.url), 'utf8'));
      } finally {
        await check.close();
      }
    } finally {
      await db.close();
    }
  });
});

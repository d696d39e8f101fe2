import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openPglite } from '../../src/db/pglite.ts';
import { type RunningBackend, servicePorts, startBackend } from '../helpers/cli-process.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// $DATA_DIR through the real binary: cloud mode writes nothing there (a Cloud Run instance has no
// such directory, and the image runs as a user who may not create one), local state is private.
describe(`DATA_DIR (${testDbKind})`, () => {
  const root = mkdtempSync(join(tmpdir(), 'backend-data-dir-'));
  let count = 0;
  /** A DATA_DIR path that does not exist yet. */
  const freshDataDir = () => join(root, `data-${++count}`);
  after(() => rmSync(root, { recursive: true, force: true }));

  const mode = (path: string) => statSync(path).mode & 0o777;

  /** A database the service does not keep in DATA_DIR: this run's PostgreSQL, or PGlite in memory. */
  async function externalDatabase(): Promise<{ url: string; db: TestDb | undefined }> {
    const db = testDbKind === 'postgres' ? await createTestDb() : undefined;
    return { url: db?.url ?? 'memory://', db };
  }

  /** Waits until /readyz answers 200, then stops the service with SIGTERM: it must exit 0. */
  async function readyThenStop(service: RunningBackend, port: string): Promise<void> {
    try {
      await service.waitForLine(/"listening on http:\/\/127\.0\.0\.1:\d+"/);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(ready.status, 200, await ready.text());
      service.child.kill('SIGTERM');
      assert.equal(await service.exit, 0, service.output());
      assert.match(service.output(), /"shut down cleanly"/);
    } finally {
      service.child.kill('SIGKILL');
    }
  }

  test('cloud mode with an external database starts, serves and stops without creating DATA_DIR', async () => {
    const { url, db } = await externalDatabase();
    const dataDir = freshDataDir();
    const ports = await servicePorts();
    const service = startBackend(['serve'], {
      ...ports,
      DATABASE_URL: url,
      DATA_DIR: dataDir,
      TASKS_BACKEND: 'cloud',
      GCP_PROJECT_ID: 'backend-test',
      GCP_LOCATION: 'us-central1',
      PUBLIC_BASE_URL: 'https://backend.example.test',
      TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks-invoker@backend-test.iam.gserviceaccount.com',
      SESSION_SECRET: 's'.repeat(40),
      // No Google credentials are looked for on a metadata server: nothing leaves this machine.
      METADATA_SERVER_DETECTION: 'none',
    });
    try {
      await readyThenStop(service, ports.PORT!);
      assert.equal(existsSync(dataDir), false, 'cloud mode created DATA_DIR');
    } finally {
      await db?.close();
    }
  });

  test('local mode with an external database keeps its secrets and emulator state in a 0700 DATA_DIR, and no control file', async () => {
    const { url, db } = await externalDatabase();
    const dataDir = freshDataDir();
    const ports = await servicePorts();
    const service = startBackend(['serve'], { ...ports, DATABASE_URL: url, DATA_DIR: dataDir });
    try {
      await readyThenStop(service, ports.PORT!);
      assert.equal(mode(dataDir), 0o700);
      assert.equal(mode(join(dataDir, 'session-secret')), 0o600);
      assert.equal(mode(join(dataDir, 'whatsapp-app-secret')), 0o600);
      assert.ok(existsSync(join(dataDir, 'emulator')));
      // Other terminals open the database themselves: there is nothing to hand over.
      assert.equal(existsSync(join(dataDir, 'control.json')), false);
      assert.equal(existsSync(join(dataDir, 'pglite')), false);
    } finally {
      await db?.close();
    }
  });

  test('the embedded database on disk: DATA_DIR and its PGlite directory are 0700, the control file 0600', {
    skip: testDbKind === 'postgres' && 'embedded database only',
  }, async () => {
    const dataDir = freshDataDir();
    const ports = await servicePorts();
    const service = startBackend(['serve'], { ...ports, DATA_DIR: dataDir });
    try {
      await service.waitForLine(/"listening on/);
      // The control file is written after listening: wait for the line printed after it.
      await service.waitForLine(/backend is running on/);
      assert.equal(mode(dataDir), 0o700);
      assert.equal(mode(join(dataDir, 'pglite')), 0o700);
      assert.equal(mode(join(dataDir, 'control.json')), 0o600);
      service.child.kill('SIGTERM');
      assert.equal(await service.exit, 0, service.output());
      assert.equal(existsSync(join(dataDir, 'control.json')), false, 'the control file outlived the service');
    } finally {
      service.child.kill('SIGKILL');
    }
  });

  test('an existing PGlite directory made before this rule is tightened to 0700; an existing DATA_DIR is left as it is', {
    skip: testDbKind === 'postgres' && 'embedded database only',
  }, async () => {
    const dataDir = freshDataDir();
    mkdirSync(join(dataDir, 'pglite'), { recursive: true, mode: 0o755 });
    const db = await openPglite({ dataDir: join(dataDir, 'pglite') });
    try {
      assert.equal(mode(join(dataDir, 'pglite')), 0o700);
      assert.equal(mode(dataDir), 0o755);
    } finally {
      await db.close();
    }
  });
});

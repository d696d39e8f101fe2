import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import { loadConfig } from '../../src/config.ts';
import type { Tx } from '../../src/db/db.ts';
import { healthChecks } from '../../src/domains/health/health.repository.ts';
import { type Service, startService } from '../../src/main.ts';
import { queues, schedules } from '../../src/task-registry.ts';
import { taskIdFor } from '../../src/tasks/enqueue.ts';
import { payloadHash } from '../../src/tasks/push-route.ts';
import { syncQueues } from '../../src/tasks/queue-sync.ts';
import { replayRun } from '../../src/tasks/replay.ts';
import { JOB_PREFIX, syncSchedules } from '../../src/tasks/schedule-sync.ts';
import { taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { freePort } from '../helpers/cli-process.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// The whole local system in one process: PGlite or PostgreSQL, the embedded emulator over a real
// socket, OIDC-signed pushes to the real push route. Time is real here; tests await events.
describe(`the service end to end (${testDbKind})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'backend-service-'));
  let pg: TestDb | undefined;
  let service: Service;
  let env: Record<string, string>;

  async function start(): Promise<Service> {
    return startService(loadConfig(env), { logger: captureLogger('warn').logger });
  }

  before(async () => {
    const port = await freePort();
    pg = testDbKind === 'postgres' ? await createTestDb() : undefined;
    env = {
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
      DATA_DIR: dataDir,
      EMULATOR_GRPC_PORT: '0',
      EMULATOR_HTTP_PORT: '0',
      ...(pg?.url ? { DATABASE_URL: pg.url } : {}),
    };
    service = await start();
  });
  after(async () => {
    await service.close();
    await pg?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const outboxRows = async () =>
    (await service.db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_outbox')).rows[0]!.n;

  test('an enqueued task goes through the emulator, an OIDC-signed push and the push route, and succeeds', async () => {
    const done = service.events.waitFor('run:succeeded', (e) => e.task === 'health.check' && e.key === 'e2e-1');
    const result = await service.enqueuer.enqueue('health.check', {}, { key: 'e2e-1' });
    assert.equal(result.created, true);
    assert.match(result.taskName, /\/queues\/maintenance\/tasks\/[0-9a-f]{32}-health-check$/);
    await done;
    const run = await taskRuns.findRun(service.db, 'health.check', 'e2e-1');
    assert.equal(run?.status, 'succeeded');
    // The service probes its queue backend (here the emulator, through the official client).
    const [check] = await healthChecks.recentChecks(service.db);
    assert.deepEqual(
      check!.checks.map((c) => [c.name, c.ok]),
      [
        ['database', true],
        ['queue backend', true],
      ],
    );
    assert.equal(run?.queueName, 'maintenance');
    assert.equal(run?.delivery['x-cloudtasks-taskretrycount'], '0');
    // Enqueueing the same key again is answered ALREADY_EXISTS by Cloud Tasks, and is a success.
    const again = await service.enqueuer.enqueue('health.check', {}, { key: 'e2e-1' });
    assert.deepEqual(again, { taskName: result.taskName, created: false });
  });

  test('enqueue inside a transaction that rolls back sends nothing', async () => {
    await assert.rejects(
      service.db.transaction(async (tx) => {
        await service.enqueuer.enqueue('health.check', {}, { tx, key: 'rolled-back' });
        throw new Error('the caller changed its mind');
      }),
      /changed its mind/,
    );
    assert.equal(await outboxRows(), 0);
    await service.relay.flush();
    const name = service.clients.tasks.taskPath(
      'local',
      'us-central1',
      'maintenance',
      taskIdFor({ name: 'health.check' }, 'rolled-back'),
    );
    await assert.rejects(service.clients.tasks.getTask({ name }), (err: { code?: number }) => err.code === 5);
    assert.equal(await taskRuns.findRun(service.db, 'health.check', 'rolled-back'), undefined);
  });

  test('enqueue inside a transaction that commits is sent after the commit and runs once', async () => {
    const done = service.events.waitFor('run:succeeded', (e) => e.key === 'committed-1');
    await service.db.transaction(async (tx) => {
      await service.enqueuer.enqueue('health.check', {}, { tx, key: 'committed-1' });
    });
    await done;
    assert.equal(await outboxRows(), 0);
    assert.equal((await taskRuns.findRun(service.db, 'health.check', 'committed-1'))?.attempts, 1);
  });

  test('many enqueues in one transaction are written together at commit (a repeated key once) and all sent', async () => {
    const tasks = service.clients.tasks;
    const queue = tasks.queuePath('local', 'us-central1', 'maintenance');
    await tasks.pauseQueue({ name: queue });
    try {
      const keys = Array.from({ length: 600 }, (_, i) => `batch-${i}`);
      let seenInside = -1;
      await service.db.transaction(async (tx) => {
        for (const key of keys) await service.enqueuer.enqueue('health.check', {}, { tx, key });
        await service.enqueuer.enqueue('health.check', {}, { tx, key: 'batch-0' });
        // Nothing is written before the commit: the rows go in one statement per 500 just before it.
        seenInside = Number((await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM task_outbox')).rows[0]!.n);
      });
      assert.equal(seenInside, 0);
      while ((await outboxRows()) > 0) await service.relay.flush();
      const [listed] = await tasks.listTasks({ parent: queue, pageSize: 1000 });
      const ids = new Set(listed.map((t) => t.name!.split('/').pop()));
      for (const key of keys) assert.ok(ids.has(taskIdFor({ name: 'health.check' }, key)), key);
      assert.equal(
        listed.filter((t) => keys.some((k) => t.name!.endsWith(taskIdFor({ name: 'health.check' }, k)))).length,
        600,
      );
    } finally {
      await tasks.purgeQueue({ name: queue });
      await tasks.resumeQueue({ name: queue });
    }
  });

  test('a task committed to the outbox by a process that died before relaying it is delivered once after a restart', async () => {
    // A transaction handle without afterCommit: the commit happens, the relay is never told, as
    // when the process dies between the two.
    await service.db.transaction(async (tx: Tx) => {
      const silent = { inTransaction: true as const, query: tx.query.bind(tx), exec: tx.exec.bind(tx) };
      await service.enqueuer.enqueue('health.check', {}, { tx: silent as unknown as Tx, key: 'survivor-1' });
    });
    assert.equal(await outboxRows(), 1);
    await service.close();
    service = await start();
    await service.events.waitFor('run:succeeded', (e) => e.key === 'survivor-1');
    assert.equal(await outboxRows(), 0);
    const run = await taskRuns.findRun(service.db, 'health.check', 'survivor-1');
    assert.equal(run?.status, 'succeeded');
    assert.equal(run?.attempts, 1);
  });

  test('a dead run is replayed as a new series of attempts and succeeds', async () => {
    const now = new Date();
    const { rows } = await service.db.query<{ id: number }>(
      `INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, last_error, created_at, updated_at)
       VALUES ('health.check', 'dead-1', 'dead', 3, '{}', $2, 'database probe timed out (last allowed attempt)', $1, $1)
       RETURNING id`,
      [now, payloadHash({})],
    );
    const id = rows[0]!.id;
    const done = service.events.waitFor('run:succeeded', (e) => e.key === 'dead-1');
    const replayed = await replayRun(service.db, service.enqueuer, id, now);
    assert.equal(replayed.run.replays, 1);
    await done;
    const run = await taskRuns.getRun(service.db, id);
    assert.equal(run?.status, 'succeeded');
    assert.equal(run?.attempts, 4);
    await assert.rejects(replayRun(service.db, service.enqueuer, id, now), /only dead or failed runs can be replayed/);
  });

  test('queues sync creates the declared queues once; a second run changes nothing (gRPC and REST)', async () => {
    const rest = new CloudTasksClient({
      fallback: 'rest',
      protocol: 'http',
      apiEndpoint: '127.0.0.1',
      port: service.emulator!.httpPort,
      authClient: new PassThroughClient(),
      projectId: 'local',
    });
    try {
      for (const [label, client, project] of [
        ['grpc', service.clients.tasks, 'sync-grpc'],
        ['rest', rest, 'sync-rest'],
      ] as const) {
        const target = { projectId: project, location: 'us-central1' };
        const first = await syncQueues(client, target, queues, { dryRun: false });
        assert.deepEqual(
          first.map((c) => c.action),
          queues.map(() => 'create'),
          label,
        );
        const second = await syncQueues(client, target, queues, { dryRun: false });
        assert.deepEqual(
          second.map((c) => c.action),
          queues.map(() => 'unchanged'),
          label,
        );
        const changed = queues.map((q) =>
          q.name === 'blog' ? { ...q, rateLimits: { maxDispatchesPerSecond: 3 } } : q,
        );
        const dry = await syncQueues(client, target, changed, { dryRun: true });
        assert.deepEqual(dry.find((c) => c.name === 'blog')?.details, ['rateLimits.maxDispatchesPerSecond: 2 → 3']);
        const third = await syncQueues(client, target, changed, { dryRun: false });
        assert.equal(third.find((c) => c.name === 'blog')?.action, 'update');
        const [blog] = await client.getQueue({ name: client.queuePath(project, 'us-central1', 'blog') });
        assert.equal(blog.rateLimits?.maxDispatchesPerSecond, 3);
      }
    } finally {
      await rest.close();
    }
  });

  test('schedules sync creates, leaves unchanged, and deletes only the jobs it owns', async () => {
    const client = service.clients.scheduler;
    const target = { ...service.enqueuer.target, projectId: 'sync-jobs' };
    const first = await syncSchedules(client, target, schedules, { dryRun: false });
    assert.deepEqual(
      first.map((c) => [c.name, c.action]),
      schedules.map((s) => [`${JOB_PREFIX}${s.name}`, 'create']),
    );
    const [job] = await client.getJob({
      name: client.jobPath('sync-jobs', 'us-central1', `${JOB_PREFIX}health-check`),
    });
    assert.equal(job.schedule, '*/5 * * * *');
    assert.equal(job.httpTarget?.uri, `${service.config.publicBaseUrl}/tasks/health.check`);
    assert.equal(job.httpTarget?.oidcToken?.serviceAccountEmail, service.config.tasks.invokerServiceAccount);
    const second = await syncSchedules(client, target, schedules, { dryRun: false });
    assert.deepEqual(
      second.map((c) => c.action),
      schedules.map(() => 'unchanged'),
    );
    // Someone else's job in the same location is never touched.
    const parent = client.locationPath('sync-jobs', 'us-central1');
    await client.createJob({
      parent,
      job: {
        name: client.jobPath('sync-jobs', 'us-central1', 'someone-elses-job'),
        schedule: '0 * * * *',
        httpTarget: { uri: 'http://127.0.0.1:9/elsewhere' },
      },
    });
    const third = await syncSchedules(client, target, [], { dryRun: false });
    assert.deepEqual(
      third.map((c) => [c.name, c.action]).sort(),
      schedules.map((s) => [`${JOB_PREFIX}${s.name}`, 'delete']).sort(),
    );
    const [left] = await client.listJobs({ parent });
    assert.deepEqual(
      left.map((j) => String(j.name).split('/').pop()),
      ['someone-elses-job'],
    );
  });
});

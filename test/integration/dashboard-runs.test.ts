import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.ts';
import type { Queryable } from '../../src/db/db.ts';
import { type Service, startService } from '../../src/main.ts';
import { payloadHash } from '../../src/tasks/push-route.ts';
import { type AttemptEntry, taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { freePort } from '../helpers/cli-process.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// The runs pages through app.inject over a real migrated database: as a loopback client of a
// dashboard without login (Host: localhost), first without a task backend, then inside the whole
// local service (the embedded emulator over a real socket), where a replay really runs again.

interface SeedRun {
  task?: string;
  key: string;
  status?: 'running' | 'succeeded' | 'failed' | 'dead';
  /** When its latest attempt started (what the lists order by); it finished 250 ms later. */
  updatedAt: string;
  payload?: unknown;
  lastError?: string | null;
  attempts?: number;
  attemptHistory?: AttemptEntry[];
  delivery?: Record<string, unknown>;
}

async function seedRun(db: Queryable, r: SeedRun): Promise<number> {
  const payload = r.payload ?? {};
  const status = r.status ?? 'succeeded';
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, last_error, delivery,
                            lease_expires_at, created_at, started_at, finished_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz - interval '1 second', $10,
             CASE WHEN $3 = 'running' THEN NULL ELSE $10::timestamptz + interval '250 milliseconds' END,
             $10::timestamptz + interval '250 milliseconds')
     RETURNING id`,
    [
      r.task ?? 'health.check',
      r.key,
      status,
      r.attempts ?? 1,
      JSON.stringify(payload),
      payloadHash(payload),
      r.lastError ?? (status === 'dead' || status === 'failed' ? 'probe timed out' : null),
      JSON.stringify(r.delivery ?? {}),
      status === 'running' ? new Date(Date.parse(r.updatedAt) + 60_000) : null,
      r.updatedAt,
    ],
  );
  const id = Number(rows[0]!.id);
  for (const a of r.attemptHistory ?? []) {
    await db.query(
      `INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        id,
        a.attempt,
        r.task ?? 'health.check',
        a.status,
        a.startedAt,
        a.finishedAt,
        a.durationMs,
        a.error,
        a.retryCount,
      ],
    );
  }
  return id;
}

const LOCAL = { host: 'localhost' };

async function get(app: FastifyInstance, url: string, cookie?: string) {
  const res = await app.inject({ method: 'GET', url, headers: { ...LOCAL, ...(cookie ? { cookie } : {}) } });
  return res;
}

const runIds = (body: string) => [...body.matchAll(/data-run-id="(\d+)"/g)].map((m) => Number(m[1]));
const nextLink = (body: string) => /<a rel="next" href="([^"]+)"/.exec(body)?.[1]?.replaceAll('&amp;', '&');

describe(`dashboard: runs without a task backend (${testDbKind})`, () => {
  let t: TestApp;
  const ids: Record<string, number> = {};

  before(async () => {
    t = await buildTestApp();
    // 120 runs, one a minute back from 11:59 on 2026-03-01; every fourth dead, of two tasks.
    for (let i = 0; i < 120; i++) {
      const at = new Date(Date.parse('2026-03-01T11:59:00.000Z') - i * 60_000).toISOString();
      ids[`k-${i}`] = await seedRun(t.db, {
        task: i % 2 === 0 ? 'health.check' : 'credits.topup',
        key: `k-${String(i).padStart(3, '0')}`,
        status: i % 4 === 0 ? 'dead' : 'succeeded',
        updatedAt: at,
      });
    }
  });
  after(async () => t.close());

  test('lists runs newest first with each row linking to its run, 50 to a page', async () => {
    const res = await get(t.app, '/admin/runs');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-security-policy'] as string, /default-src 'none'/);
    const rows = runIds(res.body);
    assert.equal(rows.length, 50);
    assert.equal(rows[0], ids['k-0']);
    assert.equal(rows[49], ids['k-49']);
    assert.match(res.body, new RegExp(`<a href="/admin/runs/${ids['k-0']}">`));
    assert.match(res.body, /120 runs match/);
  });

  test('keyset pages cover every run once, in order, and a page is stable when newer runs arrive', async () => {
    const first = await get(t.app, '/admin/runs?task=health.check');
    const next = nextLink(first.body);
    assert.ok(next, 'a next link');
    assert.doesNotMatch(next, /offset/i);
    // Newer runs arrive between page 1 and page 2: page 2 is still what followed page 1.
    await seedRun(t.db, { key: 'newer-1', updatedAt: '2026-03-01T12:00:00.000Z' });
    const second = await get(t.app, next);
    const all = [...runIds(first.body), ...runIds(second.body)];
    const expected = Array.from({ length: 60 }, (_, i) => ids[`k-${i * 2}`]);
    assert.deepEqual(all, expected);
    assert.equal(nextLink(second.body), undefined);
    assert.match(second.body, /End of the list/);
  });

  test('runs with the same timestamp, to the microsecond, are paged by id without loss or repeat', async () => {
    const at = '2026-02-01T10:00:00.123456Z';
    const same: number[] = [];
    for (let i = 0; i < 60; i++)
      same.push(await seedRun(t.db, { task: 'credits.monthly_grant', key: `tie-${i}`, updatedAt: at }));
    const first = await get(t.app, '/admin/runs?task=credits.monthly_grant');
    const second = await get(t.app, nextLink(first.body)!);
    assert.match(nextLink(first.body)!, /after=2026-02-01T10%3A00%3A00\.123456Z%7E/);
    assert.deepEqual([...runIds(first.body), ...runIds(second.body)], same.reverse());
  });

  test('filters by status, task, time range and key prefix, each carried in the query string', async () => {
    const dead = await get(t.app, '/admin/runs?status=dead');
    assert.deepEqual(
      runIds(dead.body),
      Array.from({ length: 30 }, (_, i) => ids[`k-${i * 4}`]),
    );
    assert.ok(runIds(dead.body).length > 0);
    assert.match(dead.body, /<option value="dead" selected>/);

    // 11:00 (inclusive) to 11:10 (exclusive): the runs of minutes 59 down to 50 before noon.
    const range = await get(t.app, '/admin/runs?task=credits.topup&from=2026-03-01T11%3A00&to=2026-03-01T11%3A10');
    assert.deepEqual(runIds(range.body), [ids['k-51'], ids['k-53'], ids['k-55'], ids['k-57'], ids['k-59']]);
    assert.match(range.body, /name="from" value="2026-03-01T11:00:00"/);

    const prefix = await get(t.app, '/admin/runs?key=k-11');
    assert.deepEqual(
      runIds(prefix.body),
      [110, 111, 112, 113, 114, 115, 116, 117, 118, 119].map((i) => ids[`k-${i}`]),
    );
    const exact = await get(t.app, '/admin/runs?key=k-007');
    assert.deepEqual(runIds(exact.body), [ids['k-7']]);
    // LIKE's wildcards in a key are matched literally.
    const wildcard = await get(t.app, '/admin/runs?key=k-%25');
    assert.deepEqual(runIds(wildcard.body), []);

    const bad = await get(t.app, '/admin/runs?status=exploded&from=yesterday');
    assert.equal(bad.statusCode, 200);
    assert.match(bad.body, /Unknown status &quot;exploded&quot;/);
    assert.match(bad.body, /is not a time/);
  });

  test('a payload, key or error containing markup renders inert', async () => {
    const evil = '<script>alert(1)</script>';
    const id = await seedRun(t.db, {
      key: `x${evil}`,
      status: 'dead',
      updatedAt: '2026-01-01T00:00:00.000Z',
      payload: { text: evil },
      lastError: `boom ${evil}`,
      delivery: { 'X-CloudTasks-QueueName': evil },
      attemptHistory: [
        {
          attempt: 1,
          status: 'dead',
          startedAt: '2026-01-01T00:00:00.000Z',
          finishedAt: '2026-01-01T00:00:01.500Z',
          durationMs: 1500,
          error: evil,
          retryCount: 0,
        },
      ],
    });
    for (const url of [`/admin/runs/${id}`, '/admin/runs?status=dead&to=2026-01-02T00%3A00']) {
      const res = await get(t.app, url);
      assert.equal(res.statusCode, 200);
      assert.doesNotMatch(res.body, /<script>/);
      assert.match(res.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    }
    const detail = (await get(t.app, `/admin/runs/${id}`)).body;
    assert.match(detail, /<tr data-attempt="1" data-status="dead">/);
    assert.match(detail, /1\.5 s/);
    assert.match(detail, /The task backend is not connected/);
    assert.doesNotMatch(detail, /action="\/admin\/runs\/\d+\/replay"/);
  });

  test('an unknown run is a 404 page; a replay without a backend says so and changes nothing', async () => {
    assert.equal((await get(t.app, '/admin/runs/999999')).statusCode, 404);
    assert.equal((await get(t.app, '/admin/runs/abc')).statusCode, 404);
    const page = await get(t.app, `/admin/runs/${ids['k-0']}`);
    const cookie = (page.headers['set-cookie'] as string).split(';')[0]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec((await get(t.app, '/admin/runs/replay', cookie)).body);
    assert.equal(csrf, null, 'no replay form without a backend');
    const res = await t.app.inject({
      method: 'POST',
      url: `/admin/runs/${ids['k-0']}/replay`,
      headers: { ...LOCAL, cookie, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'x=1',
    });
    assert.equal(res.statusCode, 403, 'no CSRF token');
    assert.equal((await taskRuns.getRun(t.db, ids['k-0']!))?.status, 'dead');
  });
});

describe(`dashboard: replay through the local service (${testDbKind})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'backend-dashboard-'));
  let pg: TestDb | undefined;
  let service: Service;
  let cookie: string;
  let csrf: string;

  const audit = async (action: string) =>
    (
      await service.db.query<{ actor: string; target: string | null; detail: Record<string, unknown> }>(
        'SELECT actor, target, detail FROM audit_events WHERE action = $1 ORDER BY id',
        [action],
      )
    ).rows;

  const post = (url: string, form: Record<string, string>) =>
    service.app.inject({
      method: 'POST',
      url,
      headers: { ...LOCAL, cookie, 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(form).toString(),
    });

  before(async () => {
    const port = await freePort();
    pg = testDbKind === 'postgres' ? await createTestDb() : undefined;
    service = await startService(
      loadConfig({
        PORT: String(port),
        HOST: '127.0.0.1',
        PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
        DATA_DIR: dataDir,
        EMULATOR_GRPC_PORT: '0',
        EMULATOR_HTTP_PORT: '0',
        ...(pg?.url ? { DATABASE_URL: pg.url } : {}),
      }),
      { logger: captureLogger('warn').logger },
    );
    // The browser's cookie and its CSRF token, as a page's form carries it.
    const id = await seedRun(service.db, { key: 'csrf-probe', status: 'dead', updatedAt: new Date().toISOString() });
    const page = await get(service.app, `/admin/runs/${id}`);
    cookie = (page.headers['set-cookie'] as string).split(';')[0]!;
    csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
  });
  after(async () => {
    await service?.close();
    await pg?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a dead run replayed from its page is enqueued again and succeeds; the flash and the audit say so', async () => {
    const id = await seedRun(service.db, {
      key: 'dead-1',
      status: 'dead',
      attempts: 3,
      updatedAt: new Date().toISOString(),
    });
    const page = await get(service.app, `/admin/runs/${id}`, cookie);
    assert.match(page.body, new RegExp(`<form method="post" action="/admin/runs/${id}/replay">`));
    const done = service.events.waitFor('run:succeeded', (e) => e.key === 'dead-1');
    const res = await post(`/admin/runs/${id}/replay`, { _csrf: csrf });
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, `/admin/runs/${id}`);
    await done;
    const run = await taskRuns.getRun(service.db, id);
    assert.equal(run?.status, 'succeeded');
    assert.equal(run?.replays, 1);
    assert.equal(run?.attempts, 4);
    const flash = (res.headers['set-cookie'] as string).split(';')[0]!;
    const after = await get(service.app, `/admin/runs/${id}`, `${cookie}; ${flash}`);
    assert.match(after.body, /class="flash" role="status">Run #\d+ was replayed \(replay 1\)/);
    assert.match(after.body, /data-status="succeeded"/);
    const events = await audit('run.replay');
    assert.deepEqual(
      events.filter((e) => e.target === String(id)).map((e) => [e.actor, e.detail.key]),
      [['loopback', 'dead-1']],
    );
  });

  test('a succeeded run is not replayed: refused with the reason, recorded, unchanged', async () => {
    const id = await seedRun(service.db, { key: 'ok-1', status: 'succeeded', updatedAt: new Date().toISOString() });
    assert.doesNotMatch((await get(service.app, `/admin/runs/${id}`, cookie)).body, /\/replay"/);
    const res = await post(`/admin/runs/${id}/replay`, { _csrf: csrf });
    assert.equal(res.statusCode, 303);
    const flash = (res.headers['set-cookie'] as string).split(';')[0]!;
    const page = await get(service.app, `/admin/runs/${id}`, `${cookie}; ${flash}`);
    assert.match(page.body, /class="flash error" role="status">Run #\d+ was not replayed: .*only dead or failed runs/);
    const run = await taskRuns.getRun(service.db, id);
    assert.equal(run?.status, 'succeeded');
    assert.equal(run?.replays, 0);
    const refused = (await audit('run.replay')).filter((e) => e.target === String(id));
    assert.equal(refused.length, 1);
    assert.match(String(refused[0]!.detail.refused), /only dead or failed/);
  });

  test('a POST without the CSRF token (or with a wrong one) is refused with 403 and changes nothing', async () => {
    const id = await seedRun(service.db, { key: 'csrf-1', status: 'dead', updatedAt: new Date().toISOString() });
    const before = (await audit('run.replay')).length;
    const forms: Record<string, string>[] = [
      {},
      { _csrf: 'forged' },
      { _csrf: csrf.slice(0, -1) + (csrf.endsWith('x') ? 'y' : 'x') },
    ];
    for (const form of forms) {
      const res = await post(`/admin/runs/${id}/replay`, form);
      assert.equal(res.statusCode, 403);
      assert.match(res.body, /Nothing was changed/);
    }
    const bulk = await post('/admin/runs/replay', { key: 'csrf-' });
    assert.equal(bulk.statusCode, 403);
    const run = await taskRuns.getRun(service.db, id);
    assert.equal(run?.status, 'dead');
    assert.equal(run?.replays, 0);
    assert.equal((await audit('run.replay')).length, before);
    assert.equal((await audit('runs.replay_matching')).length, 0);
  });

  test('every dead run matching a filter: the confirmation says how many, the POST replays them all', async () => {
    const now = Date.now();
    const keys = ['bulk-1', 'bulk-2', 'bulk-3'];
    for (const [i, key] of keys.entries()) {
      await seedRun(service.db, { key, status: 'dead', updatedAt: new Date(now - i * 1000).toISOString() });
    }
    await seedRun(service.db, { key: 'bulk-ok', status: 'succeeded', updatedAt: new Date(now).toISOString() });
    const confirm = await get(service.app, '/admin/runs/replay?key=bulk-', cookie);
    assert.equal(confirm.statusCode, 200);
    assert.match(confirm.body, /Replay 3 dead runs\?/);
    assert.match(confirm.body, /At most 1,000 runs are replayed per click/);
    assert.match(confirm.body, /<input type="hidden" name="key" value="bulk-">/);
    const done = Promise.all(keys.map((key) => service.events.waitFor('run:succeeded', (e) => e.key === key)));
    const res = await post('/admin/runs/replay', { _csrf: csrf, key: 'bulk-' });
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, '/admin/runs?key=bulk-');
    await done;
    for (const key of keys)
      assert.equal((await taskRuns.findRun(service.db, 'health.check', key))?.status, 'succeeded');
    const [event] = await audit('runs.replay_matching');
    assert.equal(event?.actor, 'loopback');
    assert.deepEqual(event?.detail.filter, { status: 'dead', key: 'bulk-' });
    assert.equal(event?.detail.matched, 3);
    assert.equal(event?.detail.count, 3);
    const again = await get(service.app, '/admin/runs/replay?key=bulk-', cookie);
    assert.match(again.body, /No dead runs match/);
  });

  test('bulk replay takes at most 1,000 runs per click, and says how many remain', async () => {
    // Dead runs of a task no longer registered: each is refused at once (no such task), which
    // keeps the test fast while showing that the click stops at the cap.
    await service.db.query(
      `INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, last_error, created_at,
                              updated_at)
       SELECT 'legacy.retired', 'cap-' || i, 'dead', 1, '{}', 'x', 'gone', now(), now() - i * interval '1 millisecond'
         FROM generate_series(1, 1005) AS i`,
    );
    const confirm = await get(service.app, '/admin/runs/replay?task=legacy.retired', cookie);
    assert.match(confirm.body, /Replay 1,005 dead runs\?/);
    assert.match(confirm.body, /this click replays 1,000/);
    assert.match(confirm.body, /<button class="danger" type="submit">Replay 1,000 dead runs<\/button>/);
    const res = await post('/admin/runs/replay', { _csrf: csrf, task: 'legacy.retired' });
    assert.equal(res.statusCode, 303);
    const events = await audit('runs.replay_matching');
    const event = events.at(-1)!;
    assert.equal(event.detail.matched, 1005);
    assert.equal(event.detail.attempted, 1000);
    assert.equal(event.detail.count, 0);
    const flash = decodeURIComponent((res.headers['set-cookie'] as string).split(';')[0]!.split('=')[1]!);
    const text = JSON.parse(Buffer.from(flash, 'base64url').toString('utf8')).text as string;
    assert.match(text, /Replayed 0 dead runs\. 1000 could not be: #\d+: No task named "legacy\.retired"/);
    assert.match(text, /5 more match/);
  });
});

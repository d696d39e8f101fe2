import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { auditEvents } from '../../src/domains/audit/audit.repository.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

// The overview's charts and headline numbers, the outbox, health and audit pages, through
// app.inject over a real migrated database with rows seeded at known times (the app's clock is
// 2026-03-01T12:00:00Z).

const NOW = Date.parse('2026-03-01T12:00:00.000Z');
const LOCAL = { host: 'localhost' };

describe(`dashboard: overview, outbox, health and audit (${testDbKind})`, () => {
  let t: TestApp;
  const get = (url: string) => t.app.inject({ method: 'GET', url, headers: LOCAL });

  /** A run finished by its one attempt: `ago` ms before now, taking `ms` (failures record an error). */
  const finished = (task: string, key: string, status: string, ago: number, ms: number) =>
    t.db.query(
      `WITH run AS (
         INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, last_error, created_at,
                                started_at, finished_at, updated_at)
         VALUES ($1, $2, $3, 1, '{}', 'x', CASE WHEN $3 = 'succeeded' THEN NULL ELSE 'boom' END, $4, $4, $5, $5)
         RETURNING id)
       INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error)
       SELECT id, 1, $1, $3, $4, $5, $6, CASE WHEN $3 = 'succeeded' THEN NULL ELSE 'boom' END FROM run`,
      [task, key, status, new Date(NOW - ago - ms), new Date(NOW - ago), ms],
    );

  before(async () => {
    t = await buildTestApp();
    // Last hour: 11:55 has 3 succeeded and 1 dead health.check; 11:30 one failed credits.topup.
    for (const [i, ms] of [100, 200, 300].entries())
      await finished('health.check', `h-${i}`, 'succeeded', 5 * 60_000 - 1000, ms);
    await finished('health.check', 'h-dead', 'dead', 5 * 60_000 - 2000, 400);
    await finished('credits.topup', 't-failed', 'failed', 30 * 60_000, 1000);
    // Earlier in the day (not in the hour): two dead topups; two days ago: not counted at all.
    await finished('credits.topup', 't-day-1', 'dead', 5 * 3_600_000, 3000);
    await finished('credits.topup', 't-day-2', 'dead', 6 * 3_600_000, 5000);
    await finished('credits.topup', 't-old', 'dead', 2 * 86_400_000, 9000);
    // A task name with markup (runs of any name can be recorded): its label must render inert.
    await finished('<b>evil</b>', 'e-1', 'dead', 10 * 60_000, 50);
    await t.db.query(
      `INSERT INTO task_outbox (task, queue, task_id, idempotency_key, payload, deadline_seconds, created_at, send_attempts, last_error)
       VALUES ('whatsapp.send_message', 'default', 'tid-1', 'k-<i>1</i>', '{}', 60, $1, 3, 'UNAVAILABLE: <no route>'),
              ('health.check', 'default', 'tid-2', 'k-2', '{}', 60, $2, 0, NULL)`,
      [new Date(NOW - 600_000), new Date(NOW - 5_000)],
    );
  });
  after(async () => t.close());

  test('headline numbers: runs finished in the last hour, dead runs waiting, outbox depth', async () => {
    const res = await get('/admin');
    assert.equal(res.statusCode, 200);
    const stats = [...res.body.matchAll(/<div class="stat"><a href="([^"]+)">([^<]+)<\/a>/g)].map((m) => [m[1], m[2]]);
    assert.deepEqual(stats, [
      ['/admin/runs', '6'],
      ['/admin/runs?status=dead', '5'],
      ['/admin/outbox', '2'],
    ]);
    assert.match(res.body, /3 failed or dead/);
    assert.match(res.body, /oldest 10 min 0 s old/);
  });

  test('runs per minute by outcome: stacked bars with a title for each, over the 60 minutes to now', async () => {
    const body = (await get('/admin')).body;
    assert.match(
      body,
      /<svg class="chart" id="runs-per-minute"[^>]*role="img" aria-labelledby="runs-per-minute-title runs-per-minute-desc"/,
    );
    assert.match(body, /<title id="runs-per-minute-title">Runs per minute by outcome, last hour \(UTC\)<\/title>/);
    assert.match(body, /from 11:01 to 12:00 UTC, stacked by outcome: 6 in all/);
    assert.match(body, /<title>11:55: 3 succeeded<\/title>/);
    assert.match(body, /<title>11:55: 1 dead<\/title>/);
    assert.match(body, /<title>11:30: 1 failed \(retried\)<\/title>/);
    assert.match(body, /<title>11:50: 1 dead<\/title>/);
  });

  test('failures by task over the hour and the day, and p50/p95 durations', async () => {
    const body = (await get('/admin')).body;
    assert.match(body, /<title>credits\.topup, last hour: 1<\/title>/);
    assert.match(body, /<title>credits\.topup, last day: 3<\/title>/);
    assert.match(body, /<title>health\.check, last day: 1<\/title>/);
    // Percentiles (nearest rank) are read from 6 %-wide buckets: within 3.2 % of the exact figure.
    const figure = (task: string, series: string, chart: string) => {
      const svg = new RegExp(`<svg class="chart" id="${chart}".*?</svg>`, 's').exec(body)![0];
      const m = new RegExp(`<title>${task.replace('.', '\\.')}, ${series}: ([\\d,]+) ms</title>`).exec(svg);
      return Number(m![1]!.replace(',', ''));
    };
    const near = (actual: number, exact: number) =>
      assert.ok(Math.abs(actual - exact) <= exact * 0.032, `${actual} is not within 3.2 % of ${exact}`);
    // health.check in the hour: 100, 200, 300, 400 ms → p50 200, p95 400.
    near(figure('health.check', 'p50', 'durations-hour'), 200);
    near(figure('health.check', 'p95', 'durations-hour'), 400);
    // credits.topup over the day: 1000, 3000, 5000 → p50 3000, p95 5000; the run of two days ago is out.
    near(figure('credits.topup', 'p50', 'durations-day'), 3000);
    near(figure('credits.topup', 'p95', 'durations-day'), 5000);
    near(figure('credits.topup', 'p50', 'durations-hour'), 1000);
    const row = /<tr data-task="credits.topup">(.*?)<\/tr>/.exec(body)![1]!;
    const cells = [...row.matchAll(/<td class="num">([^<]*)<\/td>/g)].map((m) => m[1]);
    // Runs and failures in the hour and the day; then durations as the figures above, in seconds.
    assert.deepEqual([cells[0], cells[1], cells[4], cells[5]], ['1', '1', '3', '3']);
    assert.deepEqual([cells[2], cells[6], cells[7]], ['998 ms', '3.1 s', '5.1 s']);
  });

  test('labels with markup are escaped in the charts and tables', async () => {
    const body = (await get('/admin')).body;
    assert.doesNotMatch(body, /<b>evil<\/b>/);
    assert.match(body, /&lt;b&gt;evil&lt;\/b&gt;/);
  });

  test('the outbox page lists rows waiting, oldest first, with why they wait', async () => {
    const res = await get('/admin/outbox');
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /2 rows waiting/);
    const rows = [...res.body.matchAll(/<tr data-outbox-id="(\d+)">(.*?)<\/tr>/g)];
    assert.equal(rows.length, 2);
    assert.match(rows[0]![2]!, /whatsapp\.send_message.*10 min 0 s.*sending failed 3×.*UNAVAILABLE: &lt;no route&gt;/);
    assert.match(rows[1]![2]!, /health\.check.*5\.0 s.*just written/);
    assert.doesNotMatch(res.body, /<i>1<\/i>/);
  });

  test('the health page shows each check with every probe, its status and latency, newest first', async () => {
    const checks = (db: boolean, latency: number, error: string | null) =>
      JSON.stringify([
        { name: 'database', ok: db, latencyMs: latency, error },
        { name: 'queue backend', ok: true, latencyMs: 12, error: null },
      ]);
    await t.db.query(
      `INSERT INTO health_checks (run_key, status, checks, checked_at) VALUES
         ('a', 'ok', $1, $2), ('b', 'down', $3, $4)`,
      [checks(true, 3, null), new Date(NOW - 600_000), checks(false, 5000, 'timeout <x>'), new Date(NOW - 300_000)],
    );
    const res = await get('/admin/health');
    assert.equal(res.statusCode, 200);
    const rows = [...res.body.matchAll(/<tr data-status="(\w+)">(.*?)<\/tr>/g)];
    assert.deepEqual(
      rows.map((r) => r[1]),
      ['down', 'ok'],
    );
    assert.match(rows[0]![2]!, /data-probe="database" data-ok="false".*5\.0 s.*timeout &lt;x&gt;/);
    assert.match(rows[1]![2]!, /data-probe="database" data-ok="true".*3 ms/);
    assert.match(res.body, /<th scope="col">queue backend<\/th>/);
  });

  test('the audit page lists events newest first, in keyset pages', async () => {
    for (let i = 0; i < 55; i++) {
      await auditEvents.append(t.db, {
        at: new Date(NOW - (55 - i) * 1000),
        actor: i === 54 ? '<img src=x>' : 'ops@example.com',
        action: 'run.replay',
        target: String(i),
        detail: { n: i },
      });
    }
    const first = await get('/admin/audit');
    const ids = (body: string) => [...body.matchAll(/data-audit-id="(\d+)"/g)].map((m) => Number(m[1]));
    const page1 = ids(first.body);
    assert.equal(page1.length, 50);
    assert.match(first.body, /&lt;img src=x&gt;/);
    assert.match(first.body, /<a href="\/admin\/runs\/54">run #54<\/a>/);
    const next = /<a rel="next" href="([^"]+)"/.exec(first.body)![1]!.replaceAll('&amp;', '&');
    const page2 = ids((await get(next)).body);
    assert.equal(page2.length, 5);
    const all = [...page1, ...page2];
    assert.deepEqual(
      all,
      [...all].sort((a, b) => b - a),
    );
    assert.equal(new Set(all).size, 55);
  });

  test('the day older than an hour is reread every 30 s; the rest of the day and the hour on every request', async () => {
    const row = async () => {
      const body = (await get('/admin')).body;
      const cells = /<tr data-task="maintenance.prune_runs">(.*?)<\/tr>/.exec(body)?.[1] ?? '';
      const nums = [...cells.matchAll(/<td class="num">([^<]*)<\/td>/g)].map((m) => m[1]);
      return { hour: nums[0], day: nums[4] };
    };
    await get('/admin');
    await finished('maintenance.prune_runs', 'p-recent', 'succeeded', 30 * 60_000, 10);
    await finished('maintenance.prune_runs', 'p-older', 'succeeded', 2 * 3_600_000, 10);
    assert.deepEqual(await row(), { hour: '1', day: '1' });
    t.clock.advance(30_000);
    assert.deepEqual(await row(), { hour: '1', day: '2' });
    t.clock.set(NOW);
  });
});

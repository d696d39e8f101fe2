// The dashboard under realistic volume (issue 12): every /admin page must answer in under 100 ms at
// p95 with 1,000,000 task runs and 100,000 credit ledger rows.
//
// Run: node bench/dashboard.bench.ts [--runs 1000000] [--ledger 100000] [--requests 40] [--warmup 3]
//        [--keep] [--reuse bench_dashboard_<pid>]
// PostgreSQL from BENCH_DATABASE_URL (default the local server); the script creates, migrates,
// seeds (in SQL, with generate_series: about a minute), analyses and drops its own database. It then
// starts the whole local service (startService: the app, the embedded emulator) on that database,
// requests each page --requests times one after another over loopback HTTP as a local client of the
// dashboard without login, prints p50/p95 per page, and EXPLAIN (ANALYZE, BUFFERS) of every list
// query: this file's (src/admin/runs.queries.ts) and EXPLAIN_CASES of any other src/admin/*.queries.ts.
// Bounded: a few minutes in all. Exits 1 when a page does not answer 200. Results: bench/results/dashboard.md.
//
// Seeded before the service starts and analysed, so the planner sees the real volume (a table
// analysed while nearly empty gets plans that collapse as it grows).

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { type ExplainCase, explainCases } from '../src/admin/runs.queries.ts';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';
import { openPostgres } from '../src/db/postgres.ts';
import { createLogger } from '../src/logger.ts';
import { startService } from '../src/main.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    ledger: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '40' },
    warmup: { type: 'string', default: '3' },
    // Keep the seeded database (its name is printed) to look at plans by hand; drop it yourself.
    keep: { type: 'boolean', default: false },
    // Measure a database kept by an earlier --keep run instead of seeding a new one (kept too).
    reuse: { type: 'string' },
  },
});
const RUNS = Number(args.runs);
const LEDGER = Number(args.ledger);
const REQUESTS = Number(args.requests);
const WARMUP = Number(args.warmup);
const SAMPLE_TASK = 'whatsapp.process_message';

// 1M runs over the 30 days to now, newest last: eight tasks of unequal weight, ~94 % succeeded,
// ~3 % failed (waiting for a retry), ~2.5 % dead, the newest 200 running; one to four attempts with
// their history; durations from a few ms to seconds, by task.
const SEED_RUNS = `
  WITH base AS (
    SELECT i,
           now() - ((($1::int - i)::float8 / $1::int) * interval '30 days') AS at,
           (ARRAY['whatsapp.process_message','whatsapp.process_message','whatsapp.process_message',
                  'whatsapp.send_message','whatsapp.send_message','scraper.scrape_page','blog.generate_post',
                  'health.check','credits.topup','credits.monthly_grant','maintenance.prune_runs'])[(1 + hashint(i) % 11)::int] AS task,
           (hashint(i * 7 + 3) % 1000) AS r,
           (10 + (hashint(i * 13 + 5) % 400)) * (1 + (hashint(i * 17) % 7)) AS ms
      FROM generate_series(1, $1::int) AS i
  ), shaped AS (
    SELECT *,
           CASE WHEN i > $1::int - 200 THEN 'running'
                WHEN r < 25 THEN 'dead' WHEN r < 55 THEN 'failed' ELSE 'succeeded' END AS status,
           CASE WHEN r < 55 THEN 2 + (r % 3) ELSE 1 END AS attempts
      FROM base
  ), runs AS (
  INSERT INTO task_runs (task, idempotency_key, status, attempts, lease_expires_at, payload, payload_hash, result,
                         last_error, cloud_task_name, queue_name, delivery, replays,
                         created_at, started_at, finished_at, updated_at)
  SELECT task, 'key-' || lpad(i::text, 7, '0'), status, attempts,
         CASE WHEN status = 'running' THEN at + interval '5 minutes' END,
         jsonb_build_object('from', '+3161' || lpad((i % 100000)::text, 7, '0'), 'text', 'message number ' || i),
         md5(i::text),
         CASE WHEN status = 'succeeded' THEN jsonb_build_object('ok', true, 'n', i) END,
         CASE WHEN status IN ('failed', 'dead') THEN 'Graph API answered 500 (attempt ' || attempts || ')' END,
         'projects/local/locations/us-central1/queues/default/tasks/t' || i, 'default',
         jsonb_build_object('X-CloudTasks-QueueName', 'default', 'X-CloudTasks-TaskName', 't' || i,
                            'X-CloudTasks-TaskRetryCount', (attempts - 1)::text),
         CASE WHEN r % 200 = 0 THEN 1 ELSE 0 END,
         at - (attempts - 1) * interval '30 seconds' - ms * interval '1 millisecond',
         at - ms * interval '1 millisecond',
         CASE WHEN status <> 'running' THEN at END,
         at
    FROM shaped
  RETURNING id, idempotency_key)
  -- Each finished attempt a task_attempts row (migration 0017).
  INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
  SELECT runs.id, a, s.task, CASE WHEN a < s.attempts THEN 'failed' ELSE s.status END,
         s.at - (s.attempts - a) * interval '30 seconds' - s.ms * interval '1 millisecond',
         s.at - (s.attempts - a) * interval '30 seconds', s.ms,
         CASE WHEN a < s.attempts OR s.status IN ('failed', 'dead') THEN 'Graph API answered 500' END, a - 1
    FROM runs JOIN shaped s ON runs.idempotency_key = 'key-' || lpad(s.i::text, 7, '0')
   CROSS JOIN generate_series(1, CASE WHEN s.status = 'running' THEN s.attempts - 1 ELSE s.attempts END) AS a`;

// hashint: a cheap deterministic spread (no random(), so every run of the benchmark seeds the same rows).
const HASHINT = `
  CREATE FUNCTION hashint(i int8) RETURNS int8 LANGUAGE sql IMMUTABLE AS
  $$ SELECT abs(hashint8(i)::int8) $$`;

const SEED_LEDGER = `
  WITH acc AS (
    INSERT INTO accounts (plan, monthly_credits, balance, created_at, updated_at)
    SELECT 'basic', 100, 0, now() - interval '60 days', now() FROM generate_series(1, 2000)
    RETURNING id
  ), ids AS (SELECT array_agg(id ORDER BY id) AS a FROM acc)
  INSERT INTO credit_ledger (account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at)
  SELECT ids.a[(1 + hashint(i) % 2000)::int], CASE WHEN i % 10 = 0 THEN 100 ELSE -1 END,
         CASE WHEN i % 10 = 0 THEN 'topup' ELSE 'charge' END, 'ledger-' || i, 'bench', 1000,
         now() - (($1::int - i)::float8 / $1::int) * interval '30 days'
    FROM ids, generate_series(1, $1::int) AS i`;

const SEED_OTHERS = `
  INSERT INTO health_checks (run_key, status, checks, checked_at)
  SELECT 'hc-' || i, CASE WHEN i % 97 = 0 THEN 'degraded' ELSE 'ok' END,
         jsonb_build_array(jsonb_build_object('name', 'database', 'ok', true, 'latencyMs', 1 + i % 5, 'error', null),
                           jsonb_build_object('name', 'queue backend', 'ok', i % 97 <> 0, 'latencyMs', 3 + i % 11,
                                              'error', CASE WHEN i % 97 = 0 THEN 'deadline exceeded' END)),
         now() - i * interval '5 minutes'
    FROM generate_series(1, 8640) AS i;
  INSERT INTO task_outbox (task, queue, task_id, idempotency_key, payload, deadline_seconds, created_at, send_attempts, last_error)
  SELECT 'whatsapp.send_message', 'default', 'outbox-' || i, 'ob-' || i, '{}', 60, now() - i * interval '1 second',
         i % 3, CASE WHEN i % 3 > 0 THEN 'UNAVAILABLE: connect ECONNREFUSED' END
    FROM generate_series(1, 40) AS i;
  INSERT INTO audit_events (at, actor, action, target, detail)
  SELECT now() - i * interval '1 minute', 'ops@example.com', 'run.replay', i::text, '{}'
    FROM generate_series(1, 10000) AS i;`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(port: number, path: string): Promise<{ status: number; body: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers: { host: `localhost:${port}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          ms: performance.now() - started,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Other engineers' list queries: EXPLAIN_CASES of every src/admin/*.queries.ts but this one. */
async function otherExplainCases(): Promise<ExplainCase[]> {
  const dir = new URL('../src/admin/', import.meta.url);
  const cases: ExplainCase[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.queries.ts') && f !== 'runs.queries.ts')
    .sort()) {
    const mod = (await import(new URL(file, dir).href)) as { EXPLAIN_CASES?: ExplainCase[] };
    for (const c of mod.EXPLAIN_CASES ?? [])
      cases.push({ ...c, name: `${file.replace('.queries.ts', '')}: ${c.name}` });
  }
  return cases;
}

const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const reuse = args.reuse && /^bench_dashboard_\d+$/.test(args.reuse) ? args.reuse : undefined;
const dbName = reuse ?? `bench_dashboard_${process.pid}`;
const admin = new pg.Client({ connectionString: pgUrl });
await admin.connect();
if (!reuse) {
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${dbName}`);
}
const url = new URL(pgUrl);
url.pathname = `/${dbName}`;
const dataDir = mkdtempSync(join(tmpdir(), 'bench-dashboard-'));
const db = openPostgres({ url: url.toString(), max: 2, applicationName: 'bench-orchestrator' });
let failed = false;
let service: Awaited<ReturnType<typeof startService>> | undefined;
try {
  const version = (await db.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  await migrate(db);
  if (!reuse) {
    const seedStarted = performance.now();
    await db.exec(HASHINT);
    await db.query(SEED_RUNS, [RUNS]);
    const runsSeeded = performance.now();
    await db.query(SEED_LEDGER, [LEDGER]);
    await db.exec(SEED_OTHERS);
    await db.exec('VACUUM ANALYZE');
    console.log(
      `seeded ${RUNS.toLocaleString('en-US')} task runs in ${((runsSeeded - seedStarted) / 1000).toFixed(1)} s, ` +
        `${LEDGER.toLocaleString('en-US')} ledger rows and the rest, analysed, in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s in all`,
    );
  }
  const sizes = await db.query<{ relname: string; size: string }>(
    `SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) AS size FROM pg_class
      WHERE relname IN ('task_runs', 'credit_ledger') ORDER BY relname`,
  );
  console.log(sizes.rows.map((r) => `${r.relname}: ${r.size} with indexes`).join('; '));

  // Sample ids and times from the seeded data, for the pages that take one.
  const deadId = (
    await db.query<{ id: number }>("SELECT id FROM task_runs WHERE status = 'dead' ORDER BY id DESC LIMIT 1")
  ).rows[0]!.id;
  const accountId = (
    await db.query<{ id: number }>(
      'SELECT account_id AS id FROM credit_ledger GROUP BY 1 ORDER BY count(*) DESC LIMIT 1',
    )
  ).rows[0]!.id;
  const ten = new Date(Date.now() - 10 * 86_400_000);
  const cursorAt = (
    await db.query<{ at: string; id: number }>(
      `SELECT to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, id FROM task_runs
        WHERE updated_at < $1 ORDER BY updated_at DESC, id DESC LIMIT 1`,
      [ten],
    )
  ).rows[0]!;
  const week = new Date(Date.now() - 7 * 86_400_000).toISOString().slice(0, 19);
  const weekEnd = new Date(Date.now() - 7 * 86_400_000 + 3_600_000).toISOString().slice(0, 19);

  const port = await new Promise<number>((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const logger = createLogger({
    level: 'warn',
    format: 'json',
    destination: pino.destination({ dest: '/dev/null', sync: true }),
  });
  service = await startService(
    loadConfig({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
      DATA_DIR: dataDir,
      DATABASE_URL: url.toString(),
      EMULATOR_GRPC_PORT: '0',
      EMULATOR_HTTP_PORT: '0',
      LOG_LEVEL: 'warn',
    }),
    { logger },
  );

  const q = encodeURIComponent;
  const pages: [string, string][] = [
    ['overview', '/admin'],
    ['runs: newest', '/admin/runs'],
    ['runs: a page 10 days back (cursor)', `/admin/runs?after=${q(`${cursorAt.at}~${cursorAt.id}`)}`],
    ['runs: dead', '/admin/runs?status=dead'],
    ['runs: running', '/admin/runs?status=running'],
    ['runs: one task, failed', `/admin/runs?task=${q(SAMPLE_TASK)}&status=failed`],
    ['runs: one task, an hour a week ago', `/admin/runs?task=${q(SAMPLE_TASK)}&from=${q(week)}&to=${q(weekEnd)}`],
    ['runs: key prefix', '/admin/runs?key=key-00042'],
    ['runs: rare task, dead', '/admin/runs?task=maintenance.prune_runs&status=dead'],
    ['run page', `/admin/runs/${deadId}`],
    ['bulk replay confirmation (one task)', `/admin/runs/replay?task=${q(SAMPLE_TASK)}`],
    ['bulk replay confirmation (all)', '/admin/runs/replay'],
    ['outbox', '/admin/outbox'],
    ['health', '/admin/health'],
    ['audit', '/admin/audit'],
    ['queues', '/admin/queues'],
    ['schedules', '/admin/schedules'],
    ['accounts', '/admin/accounts'],
    ['account', `/admin/accounts/${accountId}`],
    ['whatsapp', '/admin/whatsapp'],
    ['posts', '/admin/posts'],
  ];

  // The floor of this run: the page shell around one primary-key lookup (a run that does not exist).
  pages.unshift(['floor: the page shell and one primary-key lookup (404 page)', '/admin/runs/0']);

  // Which pages exist (the other engineers' may not yet) and answer as expected.
  const live: { name: string; path: string; kb: number; times: number[] }[] = [];
  const notes: { name: string; path: string; note: string }[] = [];
  for (const [name, path] of pages) {
    const first = await request(port, path);
    const expected = path === '/admin/runs/0' ? 404 : 200;
    if (first.status === 404 && expected === 200 && !path.startsWith('/admin/runs')) {
      notes.push({ name, path, note: 'not there yet (404)' });
    } else if (first.status !== expected) {
      failed = true;
      notes.push({ name, path, note: `answered ${first.status}` });
    } else {
      live.push({ name, path, kb: first.body.length / 1024, times: [] });
    }
  }
  // Round robin over the pages, so that the machine's changing load falls on all of them alike.
  for (let i = 0; i < WARMUP + REQUESTS; i++) {
    for (const page of live) {
      const { ms } = await request(port, page.path);
      if (i >= WARMUP) page.times.push(ms);
    }
  }
  const results = live.map((p) => {
    const times = [...p.times].sort((a, b) => a - b);
    return {
      name: p.name,
      path: p.path,
      p50: percentile(times, 50),
      p95: percentile(times, 95),
      max: times.at(-1)!,
      note: `${p.kb.toFixed(0)} KB`,
    };
  });
  for (const n of notes) results.push({ ...n, p50: 0, p95: 0, max: 0 });
  const load = loadavg()[0]!.toFixed(1);

  console.log(
    `\nPostgreSQL ${version}, ${cpus().length} cores, load average ${load} at the end; ${REQUESTS} requests per page (round robin over the pages, one at a time) after ${WARMUP} warm-up rounds\n`,
  );
  console.log('| page | path | p50 ms | p95 ms | max ms | notes |');
  console.log('|---|---|---|---|---|---|');
  for (const r of results) {
    const over = r.p95 >= 100 ? ' **over 100 ms**' : '';
    console.log(
      `| ${r.name} | \`${r.path.length > 60 ? `${r.path.slice(0, 57)}…` : r.path}\` | ${r.p50 ? r.p50.toFixed(1) : ''} | ${r.p95 ? r.p95.toFixed(1) : ''} | ${r.max ? r.max.toFixed(1) : ''} | ${r.note}${over} |`,
    );
  }

  const cases = [...explainCases(new Date(), SAMPLE_TASK), ...(await otherExplainCases())];
  // Each list query alone, from this process (no HTTP, no rendering): what the database takes.
  console.log(`\n| query alone (${REQUESTS} runs each) | p50 ms | p95 ms |\n|---|---|---|`);
  for (const c of cases) {
    const times: number[] = [];
    try {
      for (let i = 0; i < REQUESTS; i++) {
        const started = performance.now();
        await db.query(c.sql, c.params);
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      console.log(`| ${c.name} | ${percentile(times, 50).toFixed(1)} | ${percentile(times, 95).toFixed(1)} |`);
    } catch (err) {
      console.log(`| ${c.name} | failed: ${(err as Error).message} | |`);
    }
  }

  console.log('\n## EXPLAIN (ANALYZE, BUFFERS)\n');
  for (const c of cases) {
    try {
      const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${c.sql}`, c.params);
      const lines = plan.rows.map((r) => r['QUERY PLAN']);
      const seq = lines.some((l) => /Seq Scan on (task_runs|credit_ledger)\b/.test(l))
        ? ' (sequential scan of a big table!)'
        : '';
      console.log(`### ${c.name}${seq}\n\n\`\`\`\n${lines.join('\n')}\n\`\`\`\n`);
    } catch (err) {
      console.log(`### ${c.name}\n\nEXPLAIN failed: ${(err as Error).message}\n`);
    }
  }
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  agent.destroy();
  await service?.close();
  await db.close();
  if (args.keep || reuse) console.log(`kept database ${dbName}`);
  else await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

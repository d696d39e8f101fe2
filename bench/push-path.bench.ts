// The push path under load (issues 3 and 14): no-op tasks per second through POST /tasks/{task}
// (OIDC verification with jose, claim, handler, completion) on PostgreSQL, next to two ceilings
// measured in the same run, each a bare Fastify route doing the same RS256 verification with the
// same pg pool of 10:
// - its own-SQL ceiling: the push path's own statements, group-committed the same way (the
//   repository's claim and finish through a TaskRunBatcher);
// - the naive ceiling: two autocommit statements on a minimal 4-column table of its own
//   (INSERT … ON CONFLICT DO NOTHING RETURNING, then UPDATE), --naive-seed rows seeded.
// Then each server once more at one connection, for the latency of a lone delivery.
//
// Run: node bench/push-path.bench.ts [--runs 3] [--seconds 10] [--warmup 20] [--connections 50]
//        [--seed 200000] [--naive-seed 100000] [--single-seconds 5] [--tokens 64] [--explain-only]
//        [--with-celery [--celery-tasks 10000]]
// The warm-up is 20 s per server: after 5 s the push path (the whole app, far more code for V8 to
// optimise than the two bare ceilings) still ran faster in each later round (2,857 → 3,113 → 3,669
// req/s on a quiet machine, 2026-12-02), so the first rounds measured its warm-up.
// --explain-only stops after the seed and the EXPLAINs (plans, and the WAL each statement wrote).
// --seed 5000000 measures the push path over 5 million finished runs (seeding takes minutes).
// PostgreSQL from BENCH_DATABASE_URL (default the local server); the script creates, migrates, seeds
// and drops its own database. Bounded: a warm-up of --warmup seconds and --runs measured runs of
// about --seconds each per configuration (about 2 minutes in all by default), every run also cut by a
// hard time limit; loopback only. Exits 1 when a correctness check fails. Results: bench/results/push-path.md.
//
// Each server runs in its own child process (this script forked with --serve), so the load
// generator (autocannon, in this process) does not share the servers' event loops. Every request is
// a new run: a unique idempotency key in the body, a valid token from a pre-signed pool. Each
// measured run sends a fixed number of requests (the previous run's rate × --seconds), so that
// nothing is in flight when it ends and the check is exact: succeeded rows == 200 responses.
//
// --with-celery [--celery-tasks 10000] also runs Celery's drain (bench/celery.bench.ts: Debian's
// python3-celery, a private redis-server) once per round, before the servers in odd rounds and after
// them in even ones, and prints the push path's rate over it per round (issue 14: ≥ 2.5×).
//
// BENCH_CPU_PROF=<dir> starts the servers with --cpu-prof into <dir> (profiles written on exit).

import { type ChildProcess, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import { buildApp } from '../src/app.ts';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import type { Queryable } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { openPostgres } from '../src/db/postgres.ts';
import { createLogger } from '../src/logger.ts';
import { createTaskServices } from '../src/task-services.ts';
import { defineTask, type Enqueue } from '../src/tasks/define-task.ts';
import { createPushAuthenticator } from '../src/tasks/push-auth.ts';
import { leaseMs } from '../src/tasks/push-route.ts';
import { createRegistry } from '../src/tasks/registry.ts';
import { TaskEvents } from '../src/tasks/task-events.ts';
import { type AttemptEntry, type ClaimInput, type FinishInput, taskRuns } from '../src/tasks/task-runs.repository.ts';
import { TaskRunBatcher } from '../src/tasks/task-runs-batch.ts';
import { INVOKER, startTestIssuer } from '../test/helpers/test-issuer.ts';
import { type CeleryPhase, celeryRound } from './celery-round.ts';

const TASK = 'bench.noop';
const QUEUE = 'bench';
const AUDIENCE = 'https://svc.example.run.app';
const POOL_SIZE = 10;
/** Cores used outside the benchmark (other processes, interrupts) above which a run is flagged. */
const CONTENDED_CORES = 0.15;
const JWKS_OPTIONS = { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000, timeoutDuration: 5_000 };

type Kind = 'naive' | 'ceiling' | 'push';
const KINDS: readonly Kind[] = ['naive', 'ceiling', 'push'];

interface ServeOptions {
  url: string;
  issuer: string;
  jwksUrl: string;
}

// The one no-op task: plain (not transactional), keyed by the payload's id.
const noopTask = defineTask({
  name: TASK,
  queue: QUEUE,
  payload: z.object({ id: z.string().min(1) }),
  idempotencyKey: (p) => p.id,
  handler: async () => undefined,
});

// ---------------------------------------------------------------------------------------------
// Server role: `node bench/push-path.bench.ts --serve ceiling|push '<ServeOptions JSON>'`

async function serve(kind: Kind, options: ServeOptions): Promise<void> {
  const db = openPostgres({ url: options.url, max: POOL_SIZE, applicationName: `bench-${kind}` });
  const app =
    kind === 'push' ? await pushApp(db, options) : kind === 'ceiling' ? ceilingApp(db, options) : naiveApp(db, options);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  process.on('message', async (msg: { type: string }) => {
    if (msg.type === 'stats') {
      process.send?.({ type: 'stats', elu: performance.eventLoopUtilization() });
    } else if (msg.type === 'stop') {
      await app.close();
      await db.close();
      process.exit(0); // --cpu-prof writes its profile on a normal exit
    }
  });
  process.send?.({ type: 'ready', port });
}

// The whole push path: the real app from buildApp, real OIDC verification against the local JWKS.
async function pushApp(db: ReturnType<typeof openPostgres>, options: ServeOptions) {
  const config = loadConfig({
    DATABASE_URL: options.url,
    PUBLIC_BASE_URL: AUDIENCE,
    TASKS_AUTH: 'oidc',
    TASKS_INVOKER_SERVICE_ACCOUNT: INVOKER,
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
  });
  const logger = createLogger({
    level: 'warn',
    format: 'json',
    destination: pino.destination({ dest: '/dev/null', sync: true }),
  });
  const enqueue: Enqueue = async () => {
    throw new Error('the benchmark task enqueues nothing');
  };
  return buildApp({
    config,
    db,
    logger,
    clock: systemClock,
    registry: createRegistry({ tasks: [noopTask], queues: [{ name: QUEUE }], schedules: [] }),
    pushAuth: createPushAuthenticator({
      mode: 'oidc',
      audience: config.tasks.oidcAudience,
      invokerEmail: config.tasks.invokerServiceAccount,
      issuers: [options.issuer],
      jwksUrl: options.jwksUrl,
      clock: systemClock,
    }),
    enqueue,
    services: createTaskServices(config),
    events: new TaskEvents(),
  });
}

/** The same jwtVerify call and checks as push-auth.ts (without its cache): true when the token passes. */
function verifier(options: ServeOptions) {
  const jwks = createRemoteJWKSet(new URL(options.jwksUrl), JWKS_OPTIONS);
  return async (authorization: string | undefined): Promise<boolean> => {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (!bearer) return false;
    try {
      const { payload } = await jwtVerify(bearer, jwks, {
        algorithms: ['RS256'],
        issuer: [options.issuer],
        audience: AUDIENCE,
        clockTolerance: 30,
        currentDate: new Date(),
        requiredClaims: ['exp', 'iat'],
      });
      return payload.email === INVOKER && payload.email_verified === true;
    } catch {
      return false;
    }
  };
}

// The naive ceiling: a bare route, the RS256 check, and two autocommit statements on a minimal
// table of its own (no payload, no history, one index): what any "run it once" bookkeeping costs.
function naiveApp(db: ReturnType<typeof openPostgres>, options: ServeOptions) {
  const verify = verifier(options);
  const app = Fastify();
  app.post<{ Body: { id: string } }>('/tasks/:task', async (request, reply) => {
    if (!(await verify(request.headers.authorization))) return reply.code(401).send({ error: 'unauthenticated' });
    const id = request.body.id;
    const claimed = await db.query(
      `INSERT INTO naive_runs (id, status, attempts, updated_at) VALUES ($1, 'running', 1, now())
       ON CONFLICT DO NOTHING RETURNING id`,
      [id],
    );
    if (claimed.rowCount !== 1) return reply.code(409).send({ outcome: 'duplicate' });
    await db.query(`UPDATE naive_runs SET status = 'succeeded', updated_at = now() WHERE id = $1`, [id]);
    return reply.send({ outcome: 'succeeded' });
  });
  return app;
}

// The own-SQL ceiling: a bare Fastify route, the same RS256 check, and the push path's own claim
// and finish statements, group-committed by the same TaskRunBatcher, with the parameters the push
// path passes them.
function ceilingApp(db: ReturnType<typeof openPostgres>, options: ServeOptions) {
  const verify = verifier(options);
  const runs = new TaskRunBatcher(db);
  const lease = leaseMs(noopTask);
  const app = Fastify();
  app.post<{ Body: { id: string } }>('/tasks/:task', async (request, reply) => {
    if (!(await verify(request.headers.authorization))) return reply.code(401).send({ error: 'unauthenticated' });
    const body = request.body;
    const now = new Date();
    const delivery: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (name.startsWith('x-cloudtasks-') && typeof value === 'string') delivery[name] = value;
    }
    const claimed = await runs.claim({
      task: TASK,
      key: body.id,
      payload: body,
      payloadHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
      cloudTaskName: delivery['x-cloudtasks-taskname'] ?? null,
      queueName: delivery['x-cloudtasks-queuename'] ?? null,
      delivery,
      now,
      leaseMs: lease,
    });
    if (claimed.kind !== 'claimed') return reply.code(409).send({ outcome: claimed.kind });
    const finished = new Date();
    const entry: AttemptEntry = {
      attempt: claimed.attempt,
      status: 'succeeded',
      startedAt: now.toISOString(),
      finishedAt: finished.toISOString(),
      durationMs: finished.getTime() - now.getTime(),
      error: null,
      retryCount: 0,
    };
    const ok = await runs.finish({
      runId: claimed.runId,
      attempt: claimed.attempt,
      status: 'succeeded',
      result: undefined,
      entry,
    });
    if (!ok) return reply.code(409).send({ outcome: 'fenced' });
    return reply.send({ outcome: 'succeeded', runId: claimed.runId, attempt: claimed.attempt });
  });
  return app;
}

// ---------------------------------------------------------------------------------------------
// Load generator: autocannon (CommonJS, untyped), in this process.

interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  statusCodeStats: Record<string, { count: number }>;
}
interface AutocannonInstance extends EventEmitter {
  stop(): void;
}
type AutocannonRequest = { method: string; path: string; headers: Record<string, string>; body?: string };
const autocannon = createRequire(import.meta.url)('autocannon') as (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

interface LoadResult {
  label: string;
  requests: number;
  ok200: number;
  non2xx: number;
  errors: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  cutByTimeLimit: boolean;
}

async function load(
  port: number,
  label: string,
  tokens: readonly string[],
  bound: { amount: number } | { seconds: number },
  connections: number,
  hardLimitMs: number,
): Promise<LoadResult> {
  let n = 0;
  const latencies: number[] = [];
  let cutByTimeLimit = false;
  const started = performance.now();
  let lastResponse = started;
  const result = await new Promise<AutocannonResult>((resolve, reject) => {
    let limit: NodeJS.Timeout | undefined;
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections,
        pipelining: 1,
        timeout: 10,
        // autocannon notices the end of a run at its next sample tick (default 1 s): tick often, so
        // the run (and the CPU sampled around it) ends within 50 ms of the last response.
        sampleInt: 50,
        ...('amount' in bound ? { amount: bound.amount } : { duration: bound.seconds }),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Google-Cloud-Tasks',
          'x-cloudtasks-queuename': QUEUE,
          'x-cloudtasks-taskretrycount': '0',
          'x-cloudtasks-taskexecutioncount': '0',
          'x-cloudtasks-tasketa': String(Math.floor(Date.now() / 1000)),
        },
        requests: [
          {
            method: 'POST',
            path: `/tasks/${TASK}`,
            setupRequest: (req: AutocannonRequest) => {
              const id = `${label}-${n++}`;
              return {
                ...req,
                headers: {
                  ...req.headers,
                  authorization: `Bearer ${tokens[n % tokens.length]}`,
                  'x-cloudtasks-taskname': id,
                },
                body: `{"id":"${id}"}`,
              };
            },
          },
        ],
      },
      (err, r) => {
        clearTimeout(limit);
        if (err) reject(err);
        else resolve(r);
      },
    );
    instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
      latencies.push(ms);
      lastResponse = performance.now();
    });
    limit = setTimeout(() => {
      cutByTimeLimit = true;
      instance.stop();
    }, hardLimitMs);
  });
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  const ok200 = result.statusCodeStats['200']?.count ?? 0;
  // Throughput over our own clock, first request to last response (autocannon's duration is
  // rounded to its sample ticks).
  const seconds = (lastResponse - started) / 1000;
  return {
    label,
    requests: latencies.length,
    ok200,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    seconds,
    rps: ok200 / seconds,
    p50: at(0.5),
    p99: at(0.99),
    cutByTimeLimit,
  };
}

// ---------------------------------------------------------------------------------------------
// Orchestrator

interface Server {
  kind: Kind;
  child: ChildProcess;
  port: number;
  stats(): Promise<{ elu: EventLoopUtilization }>;
  stop(): Promise<void>;
}
type EventLoopUtilization = ReturnType<typeof performance.eventLoopUtilization>;

async function startServer(kind: Kind, options: ServeOptions): Promise<Server> {
  const profDir = process.env.BENCH_CPU_PROF;
  const execArgv = [...process.execArgv, ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])];
  const child = fork(import.meta.filename, ['--serve', kind, JSON.stringify(options)], { execArgv, stdio: 'inherit' });
  const ready = await new Promise<{ type: string; port: number }>((resolve, reject) => {
    const early = () => reject(new Error(`${kind} server exited before it was ready`));
    child.once('exit', early);
    child.once('message', (m) => {
      child.off('exit', early);
      resolve(m as { type: string; port: number });
    });
  });
  const next = () => once(child, 'message').then(([m]) => m as { elu: EventLoopUtilization });
  return {
    kind,
    child,
    port: ready.port,
    async stats() {
      const reply = next();
      child.send({ type: 'stats' });
      return reply;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** User + system jiffies of one process, from /proc/<pid>/stat; 0 when it is gone. */
function processJiffies(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

interface CpuSample {
  machine: { busy: number; total: number };
  server: number;
  generator: number;
  backends: Map<number, number>;
}

/** Where the machine's CPU goes, in cores: the server, its PostgreSQL backends, the load generator, the rest. */
interface CpuSplit {
  server: number;
  postgres: number;
  generator: number;
  rest: number;
  elu: number;
}

async function sampleCpu(db: Queryable, dbName: string, server: Server): Promise<CpuSample> {
  const { rows } = await db.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2',
    [dbName, `bench-${server.kind}`],
  );
  return {
    machine: machineJiffies(),
    server: processJiffies(server.child.pid),
    generator: processJiffies(process.pid),
    backends: new Map(rows.map((r) => [r.pid, processJiffies(r.pid)])),
  };
}

function cpuSplit(before: CpuSample, after: CpuSample, elu: number): CpuSplit {
  const total = after.machine.total - before.machine.total;
  const cores = (jiffies: number) => (jiffies / total) * cpus().length;
  let postgres = 0;
  for (const [pid, j] of after.backends) postgres += j - (before.backends.get(pid) ?? 0);
  const server = after.server - before.server;
  const generator = after.generator - before.generator;
  const rest = after.machine.busy - before.machine.busy - server - generator - postgres;
  return { server: cores(server), postgres: cores(postgres), generator: cores(generator), rest: cores(rest), elu };
}

// Seeds realistic volume (the planner trap of performance.md): finished runs of several tasks, with
// their attempt history where the schema keeps it: a JSON array on the run before migration 0017, a
// task_attempts row per run since (the script runs against either, for before/after comparisons).
const seedSql = (history: 'array' | 'table') => `
  WITH runs AS (
  INSERT INTO task_runs (task, idempotency_key, status, attempts, payload, payload_hash, cloud_task_name, queue_name,
                         delivery, ${history === 'array' ? 'attempt_history, ' : ''}created_at, started_at, finished_at,
                         updated_at, last_error)
  SELECT t.task, 'seed-' || g, CASE WHEN g % 100 = 0 THEN 'dead' ELSE 'succeeded' END, 1 + (g % 100 = 0)::int * 4,
         jsonb_build_object('id', 'seed-' || g), md5(g::text) || md5((g + 1)::text), 'seed-' || g, t.queue,
         jsonb_build_object('x-cloudtasks-queuename', t.queue, 'x-cloudtasks-taskname', 'seed-' || g,
                            'x-cloudtasks-taskretrycount', '0'),
         ${history === 'array' ? "jsonb_build_array(jsonb_build_object('attempt', 1, 'status', 'succeeded', 'durationMs', g % 50))," : ''}
         ts, ts, ts + interval '20 ms', ts + interval '20 ms',
         CASE WHEN g % 100 = 0 THEN 'seeded failure' END
    FROM generate_series($2::int + 1, $1::int) AS g
   CROSS JOIN LATERAL (SELECT now() - (g * interval '3 s') AS ts,
                              (ARRAY['${TASK}', 'whatsapp.send_reply', 'blog.generate_post', 'health.check'])[1 + g % 4] AS task,
                              (ARRAY['${QUEUE}', 'whatsapp', 'blog', 'maintenance'])[1 + g % 4] AS queue) AS t
  RETURNING id, task, status, attempts, started_at, finished_at, last_error)
  ${
    history === 'array'
      ? 'SELECT count(*) FROM runs'
      : `INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
         SELECT id, attempts, task, status, started_at, finished_at, 20, last_error, attempts - 1 FROM runs`
  }`;

/**
 * The two hot statements exactly as the repository sends them (recorded through a Queryable),
 * EXPLAIN ANALYZEd inside a transaction that is rolled back.
 */
async function explainHotStatements(db: ReturnType<typeof openPostgres>): Promise<{ claim: string; finish: string }> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const recorded: Array<{ text: string; values: unknown[] }> = [];
    const recorder: Queryable = {
      async query<R>(text: string, values?: readonly unknown[]) {
        recorded.push({ text, values: [...(values ?? [])] });
        const r = await client.query(text, values as unknown[]);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
      exec: async (sql) => {
        await client.query(sql);
      },
    };
    const now = new Date();
    const input = (key: string): ClaimInput => ({
      task: TASK,
      key,
      payload: { id: key },
      payloadHash: 'x',
      cloudTaskName: key,
      queueName: QUEUE,
      delivery: { 'x-cloudtasks-taskname': key },
      now,
      leaseMs: leaseMs(noopTask),
    });
    const claimed = await taskRuns.claimRun(recorder, input('explain-a'));
    if (claimed.kind !== 'claimed') throw new Error('explain: the sample claim was not claimed');
    const entry: AttemptEntry = {
      attempt: 1,
      status: 'succeeded',
      startedAt: now.toISOString(),
      finishedAt: now.toISOString(),
      durationMs: 0,
      error: null,
      retryCount: 0,
    };
    await taskRuns.finishAttempt(recorder, { runId: claimed.runId, attempt: 1, status: 'succeeded', entry });
    const [claimSql, finishSql] = recorded;
    if (!claimSql || !finishSql || recorded.length !== 2) throw new Error('explain: expected exactly two statements');
    const plan = async (text: string, values: unknown[]) =>
      (await client.query(`EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF, TIMING OFF, SUMMARY OFF) ${text}`, values)).rows
        .map((r: Record<string, string>) => r['QUERY PLAN'])
        .join('\n');
    // A second fresh key, so the EXPLAINed claim inserts like a real one; then finish that run.
    const claimValues = [...claimSql.values];
    claimValues[1] = 'explain-b';
    const claim = await plan(claimSql.text, claimValues);
    const { rows } = await client.query('SELECT id FROM task_runs WHERE task = $1 AND idempotency_key = $2', [
      TASK,
      'explain-b',
    ]);
    const finishValues = [...finishSql.values];
    finishValues[0] = rows[0]?.id;
    const finish = await plan(finishSql.text, finishValues);
    return { claim, finish };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

// The naive ceiling's own table: the four columns of a minimal "run it once" record, seeded.
const NAIVE_TABLE = `
  CREATE TABLE naive_runs (id text PRIMARY KEY, status text NOT NULL, attempts integer NOT NULL,
                           updated_at timestamptz NOT NULL)`;
const NAIVE_SEED = `
  INSERT INTO naive_runs (id, status, attempts, updated_at)
  SELECT 'seed-' || g, 'succeeded', 1, now() - g * interval '3 s' FROM generate_series(1, $1::int) AS g`;

/**
 * The group-committed statements as the repository sends them for a batch of 25, EXPLAIN ANALYZEd
 * inside a transaction that is rolled back: the claim must arbitrate on the unique index, the
 * finish must find each row by its primary key (a hash join over task_runs would read the table).
 */
async function explainBatchStatements(db: ReturnType<typeof openPostgres>): Promise<{ claim: string; finish: string }> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    // Records the statements without running them (the EXPLAIN ANALYZE below runs them).
    const recorded: Array<{ text: string; values: unknown[] }> = [];
    const recorder: Queryable = {
      async query<R>(text: string, values?: readonly unknown[]) {
        recorded.push({ text, values: [...(values ?? [])] });
        return { rows: [] as R[], rowCount: 0 };
      },
      exec: async () => {},
    };
    const plan = async (text: string, values: unknown[]) =>
      (await client.query(`EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF, TIMING OFF, SUMMARY OFF) ${text}`, values)).rows
        .map((r: Record<string, string>) => r['QUERY PLAN'])
        .join('\n');
    const now = new Date();
    const keys = Array.from({ length: 25 }, (_, i) => `explain-batch-${i}`);
    await taskRuns.claimRuns(
      recorder,
      keys.map((key) => ({
        task: TASK,
        key,
        payload: { id: key },
        payloadHash: 'x',
        cloudTaskName: key,
        queueName: QUEUE,
        delivery: { 'x-cloudtasks-taskname': key },
        now,
        leaseMs: leaseMs(noopTask),
      })),
    );
    const claimSql = recorded[0];
    if (!claimSql) throw new Error('explain: the batch claim sent nothing');
    const claim = await plan(claimSql.text, claimSql.values);
    const { rows } = await client.query<{ id: number }>(
      'SELECT id FROM task_runs WHERE task = $1 AND idempotency_key = ANY($2)',
      [TASK, keys],
    );
    recorded.length = 0;
    const entry: AttemptEntry = {
      attempt: 1,
      status: 'succeeded',
      startedAt: now.toISOString(),
      finishedAt: now.toISOString(),
      durationMs: 0,
      error: null,
      retryCount: 0,
    };
    await taskRuns.finishAttempts(
      recorder,
      rows.map((r): FinishInput => ({ runId: Number(r.id), attempt: 1, status: 'succeeded', entry })),
    );
    const finishSql = recorded[0];
    if (!finishSql || rows.length !== keys.length) throw new Error('explain: the batch finish sent nothing');
    const finish = await plan(finishSql.text, finishSql.values);
    return { claim, finish };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '20' },
      connections: { type: 'string', default: '50' },
      seed: { type: 'string', default: '200000' },
      'naive-seed': { type: 'string', default: '100000' },
      'single-seconds': { type: 'string', default: '5' },
      'explain-only': { type: 'boolean', default: false },
      tokens: { type: 'string', default: '64' },
      'with-celery': { type: 'boolean', default: false },
      'celery-tasks': { type: 'string', default: '10000' },
    },
  });
  const runs = Number(args.runs);
  const seconds = Number(args.seconds);
  const warmup = Number(args.warmup);
  const connections = Number(args.connections);
  const seedRows = Number(args.seed);
  const naiveSeedRows = Number(args['naive-seed']);
  const singleSeconds = Number(args['single-seconds']);
  const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

  const dbName = `bench_push_${process.pid}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(pgUrl);
  url.pathname = `/${dbName}`;
  const db = openPostgres({ url: url.toString(), max: 2, applicationName: 'bench-orchestrator' });
  const servers: Server[] = [];
  let issuerClose: (() => Promise<void>) | undefined;
  try {
    const pgInfo = await db.query<{ v: string; sc: string; sb: string }>(
      "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('shared_buffers') AS sb",
    );
    await migrate(db);
    const seedStarted = performance.now();
    const attemptsTable = (await db.query("SELECT to_regclass('task_attempts') IS NOT NULL AS present")).rows[0] as {
      present: boolean;
    };
    const seed = seedSql(attemptsTable.present ? 'table' : 'array');
    // In steps of a million, so a 5,000,000-row seed is not one huge statement.
    for (let from = 0; from < seedRows; from += 1_000_000) {
      await db.query(seed, [Math.min(seedRows, from + 1_000_000), from]);
    }
    await db.exec(NAIVE_TABLE);
    await db.query(NAIVE_SEED, [naiveSeedRows]);
    await db.exec('VACUUM ANALYZE task_runs');
    await db.exec('VACUUM ANALYZE naive_runs');
    if (attemptsTable.present) await db.exec('VACUUM ANALYZE task_attempts');
    console.log(
      `seeded ${seedRows} finished runs (naive table: ${naiveSeedRows} rows) and analysed in ${(performance.now() - seedStarted).toFixed(0)} ms`,
    );

    const explain = await explainHotStatements(db);
    console.log(`\nEXPLAIN claim (INSERT … ON CONFLICT … RETURNING):\n${explain.claim}`);
    console.log(
      `\nEXPLAIN finish (UPDATE … WHERE id = $1 AND attempts = $2 AND status = 'running'):\n${explain.finish}`,
    );
    // The claim must arbitrate on the unique (task, key) index and the finish must be an index scan,
    // never a sequential scan. The finish should be driven by the primary key: driven by the
    // (status, updated_at) index instead, it visits every running run's row (see bench/results).
    if (!/Conflict Arbiter Indexes: task_runs_task_key_unique/.test(explain.claim) || /Seq Scan/.test(explain.claim)) {
      throw new Error('the claim does not arbitrate on task_runs_task_key_unique (see the plan above)');
    }
    if (!/Index Scan using /.test(explain.finish) || /Seq Scan/.test(explain.finish)) {
      throw new Error('the finish UPDATE is not an index scan (see the plan above)');
    }
    if (!/Index Scan using task_runs_pkey/.test(explain.finish)) {
      console.log(
        "\nNOTE: the finish UPDATE is driven by an index other than the primary key: with status = 'running' " +
          'estimated rare, it scans every running run; its cost grows with the number of runs in progress.',
      );
    }
    const batch = await explainBatchStatements(db);
    console.log(`\nEXPLAIN batch claim (25 rows, INSERT … SELECT FROM unnest … ON CONFLICT):\n${batch.claim}`);
    console.log(`\nEXPLAIN batch finish (25 rows, UPDATE … FROM unnest):\n${batch.finish}`);
    if (!/Conflict Arbiter Indexes: task_runs_task_key_unique/.test(batch.claim) || /Seq Scan/.test(batch.claim)) {
      throw new Error('the batch claim does not arbitrate on task_runs_task_key_unique (see the plan above)');
    }
    if (!/Index Scan using task_runs_pkey/.test(batch.finish) || /Seq Scan on task_runs/.test(batch.finish)) {
      throw new Error('the batch finish does not find its rows by primary key (see the plan above)');
    }

    // The WAL each statement wrote (records and bytes, from EXPLAIN's WAL option): one index entry is
    // one WAL record, so this counts what the statements write whatever else loads the machine.
    const wal = (plan: string) => {
      const m = /WAL: records=(\d+)(?:\s+fpi=(\d+))?\s+bytes=(\d+)/.exec(plan);
      return m ? `${m[1]} records (${m[2] ?? 0} full-page images), ${m[3]} bytes` : 'none';
    };
    console.log(
      `\nWAL written: claim ${wal(explain.claim)}; finish ${wal(explain.finish)}; ` +
        `batch claim (25 rows) ${wal(batch.claim)}; batch finish (25 rows) ${wal(batch.finish)}`,
    );
    if (args['explain-only']) return;

    const issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds: () => Math.floor(Date.now() / 1000) });
    issuerClose = issuer.close;
    const tokens = await Promise.all(
      Array.from({ length: Number(args.tokens) }, (_, i) => issuer.token({ jti: `bench-${i}` })),
    );
    const badToken = await issuer.tokenFromUnknownKey();
    const serveOptions: ServeOptions = { url: url.toString(), issuer: issuer.issuer, jwksUrl: issuer.jwksUrl };
    for (const kind of KINDS) servers.push(await startServer(kind, serveOptions));

    // Sanity: a valid delivery succeeds and records a succeeded run; a bad signature is refused.
    for (const s of servers) {
      const post = (token: string, id: string) =>
        fetch(`http://127.0.0.1:${s.port}/tasks/${TASK}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id }),
        });
      const ok = await post(tokens[0]!, `sanity-${s.kind}`);
      const body = (await ok.json()) as { outcome?: string };
      const refused = await post(badToken, `sanity-bad-${s.kind}`);
      if (ok.status !== 200 || body.outcome !== 'succeeded' || refused.status !== 401) {
        throw new Error(
          `${s.kind}: sanity check failed (${ok.status} ${JSON.stringify(body)}, bad token ${refused.status})`,
        );
      }
    }

    /** Rows the run with this label left: its table's, succeeded and in all. */
    const counted = async (kind: Kind, label: string) => {
      const { rows } =
        kind === 'naive'
          ? await db.query<{ succeeded: number; total: number }>(
              `SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded, count(*) AS total
                 FROM naive_runs WHERE id LIKE $1`,
              [`${label}-%`],
            )
          : await db.query<{ succeeded: number; total: number }>(
              `SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded, count(*) AS total
                 FROM task_runs WHERE task = $1 AND idempotency_key LIKE $2`,
              [TASK, `${label}-%`],
            );
      return rows[0]!;
    };

    const rate: Record<Kind, number> = { naive: 0, ceiling: 0, push: 0 };
    for (const s of servers) {
      const w = await load(s.port, `warmup-${s.kind}`, tokens, { seconds: warmup }, connections, (warmup + 15) * 1000);
      rate[s.kind] = w.rps;
      console.log(
        `warm-up ${s.kind}: ${w.rps.toFixed(0)} req/s, p50 ${w.p50.toFixed(2)} ms, p99 ${w.p99.toFixed(2)} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000)); // the warm-up's cut-off requests finish

    type Measured = LoadResult & CpuSplit;
    const results: Record<Kind, Measured[]> = { naive: [], ceiling: [], push: [] };
    const failures: string[] = [];
    const measure = async (
      s: Server,
      label: string,
      bound: { amount: number } | { seconds: number },
      conns: number,
    ) => {
      await db.exec('VACUUM ANALYZE task_runs');
      await db.exec('VACUUM ANALYZE naive_runs');
      await db.exec('CHECKPOINT');
      const eluBefore = (await s.stats()).elu;
      const before = await sampleCpu(db, dbName, s);
      const limitMs = ('amount' in bound ? Math.max(seconds, singleSeconds) * 3 + 10 : bound.seconds + 15) * 1000;
      const r = await load(s.port, label, tokens, bound, conns, limitMs);
      const after = await sampleCpu(db, dbName, s);
      const elu = performance.eventLoopUtilization((await s.stats()).elu, eluBefore).utilization;
      const cpu = cpuSplit(before, after, elu);
      const rows = await counted(s.kind, label);
      const ok =
        !r.cutByTimeLimit &&
        r.non2xx === 0 &&
        r.errors === 0 &&
        // A run bounded by time (only the warm-ups and probes, which are not checked) ends with up to
        // one request per connection answered after it stopped listening: rows without a counted 200.
        ('amount' in bound
          ? r.requests === bound.amount && rows.total === r.ok200
          : rows.total >= r.ok200 && rows.total <= r.ok200 + conns) &&
        rows.succeeded === rows.total;
      const line =
        `${label}: ${r.ok200} × 200 in ${r.seconds.toFixed(2)} s = ${r.rps.toFixed(0)} req/s, ` +
        `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms; CPU µs/request: server ${((cpu.server / r.rps) * 1e6).toFixed(0)}, ` +
        `postgres ${((cpu.postgres / r.rps) * 1e6).toFixed(0)}; CPU cores: server ${cpu.server.toFixed(2)} ` +
        `(event loop ${(elu * 100).toFixed(0)}% busy), postgres ${cpu.postgres.toFixed(2)}, ` +
        `generator ${cpu.generator.toFixed(2)}, rest ${cpu.rest.toFixed(2)}; ` +
        `rows succeeded ${rows.succeeded}/${rows.total}, non-2xx ${r.non2xx}, errors ${r.errors}` +
        (cpu.rest > CONTENDED_CORES ? `, CONTENDED (${cpu.rest.toFixed(2)} cores used outside the benchmark)` : '') +
        (r.cutByTimeLimit ? ', CUT BY THE TIME LIMIT' : '') +
        (ok ? ' ✓' : ' ✗');
      console.log(line);
      if (!ok) failures.push(line);
      return { ...r, ...cpu };
    };

    const celery: { drain: CeleryPhase; load: number }[] = [];
    const celeryTasks = Number(args['celery-tasks']);
    const runCelery = async (round: number) => {
      const load = loadavg()[0]!;
      const { drain } = await celeryRound(celeryTasks);
      celery.push({ drain, load });
      console.log(
        `r${round}-celery: drain ${drain.perSecond.toFixed(0)} tasks/s (${drain.count} in ${drain.seconds.toFixed(2)} s), ` +
          `CPU µs/task: worker ${drain.workerCpuUs ?? '?'}, redis ${drain.redisCpuUs ?? '?'}; load average ${load.toFixed(1)}`,
      );
    };
    for (let round = 1; round <= runs; round++) {
      // Alternate the order, so table growth and autovacuum do not favour one configuration.
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      // Celery's drain on the same machine in the same round, first in odd rounds and last in even.
      if (args['with-celery'] && round % 2 === 1) await runCelery(round);
      for (const s of order) {
        const amount = Math.max(connections, Math.round(rate[s.kind] * seconds));
        const r = await measure(s, `r${round}-${s.kind}`, { amount }, connections);
        rate[s.kind] = r.rps;
        results[s.kind].push(r);
      }
      if (args['with-celery'] && round % 2 === 0) await runCelery(round);
    }
    // One delivery at a time: what batching must not slow down. Bounded by count, like the runs
    // above, so the check is exact: a run bounded by time stops with its last request unanswered
    // (at one connection its row exists and its 200 is never counted, so the count came out one
    // short). A short unmeasured probe gives the rate the count is taken from.
    const single: Partial<Record<Kind, Measured>> = {};
    if (singleSeconds > 0) {
      for (const s of servers) {
        const probeSeconds = Math.min(2, singleSeconds);
        const probe = await load(
          s.port,
          `probe-${s.kind}`,
          tokens,
          { seconds: probeSeconds },
          1,
          (probeSeconds + 15) * 1000,
        );
        const amount = Math.max(1, Math.round(probe.rps * singleSeconds));
        single[s.kind] = await measure(s, `single-${s.kind}`, { amount }, 1);
      }
    }

    // How many of the updates were HOT (no index entry written), from PostgreSQL's statistics. Each
    // backend reports its counts when it exits: the servers are stopped first.
    for (const s of servers.splice(0)) await s.stop();
    await new Promise((r) => setTimeout(r, 1000));
    const hotRows = (
      await db.query<{ relname: string; upd: string; hot: string }>(
        `SELECT relname, n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables
          WHERE relname IN ('task_runs', 'naive_runs') ORDER BY relname`,
      )
    ).rows;

    const summary = (kind: Kind) => {
      const rs = results[kind];
      const m = (f: (r: Measured) => number) => median(rs.map(f));
      return {
        rps: m((r) => r.rps),
        p50: m((r) => r.p50),
        p99: m((r) => r.p99),
        server: m((r) => r.server),
        serverPerRequest: m((r) => (r.server / r.rps) * 1e6),
        postgresPerRequest: m((r) => (r.postgres / r.rps) * 1e6),
        elu: m((r) => r.elu),
        postgres: m((r) => r.postgres),
        generator: m((r) => r.generator),
        rest: m((r) => r.rest),
      };
    };
    const n = summary('naive');
    const c = summary('ceiling');
    const p = summary('push');
    const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
    console.log(
      `\n${new Date().toISOString().slice(0, 16)} UTC, Node ${process.version}, ${cpus().length} × ${cpuModel}, ` +
        `${(totalmem() / 2 ** 30).toFixed(0)} GiB; PostgreSQL ${pgInfo.rows[0]?.v} (synchronous_commit=${pgInfo.rows[0]?.sc}, ` +
        `shared_buffers=${pgInfo.rows[0]?.sb}); ${seedRows} seeded runs, ${naiveSeedRows} naive rows; autocannon, ` +
        `${connections} connections, ${runs} runs of ~${seconds} s per configuration, medians`,
    );
    console.log(
      '\n| configuration | req/s | p50 ms | p99 ms | server CPU µs/request | postgres CPU µs/request | server cores (event loop busy) | postgres backends cores | generator cores | rest cores |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    const row = (name: string, s: typeof c) =>
      `| ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.serverPerRequest.toFixed(0)} | ` +
      `${s.postgresPerRequest.toFixed(0)} | ${s.server.toFixed(2)} (${(s.elu * 100).toFixed(0)}%) | ${s.postgres.toFixed(2)} | ` +
      `${s.generator.toFixed(2)} | ${s.rest.toFixed(2)} |`;
    console.log(row('naive ceiling: bare Fastify + jwtVerify + 2 statements on a 4-column table', n));
    console.log(row('own-SQL ceiling: bare Fastify + jwtVerify + the batched claim + finish', c));
    console.log(row('push path: buildApp, POST /tasks/{task}', p));
    if (singleSeconds > 0) {
      console.log('\nOne connection:\n\n| configuration | req/s | p50 ms | p99 ms |\n|---|---|---|---|');
      for (const kind of KINDS) {
        const r = single[kind]!;
        console.log(`| ${kind} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`);
      }
    }
    // Each round runs every configuration back to back: its ratios are less exposed to drift and to
    // other load on the machine than the ratios of medians.
    const perRound = (of: Kind) => results.push.map((r, i) => r.rps / (results[of][i]?.rps ?? Number.NaN));
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const contended = [...results.naive, ...results.ceiling, ...results.push].filter(
      (r) => r.rest > CONTENDED_CORES,
    ).length;
    console.log(
      `\nratio push path / own-SQL ceiling: ${pct(p.rps / c.rps)} of medians; per round ${perRound('ceiling').map(pct).join(', ')}.` +
        `\nratio push path / naive ceiling: ${(p.rps / n.rps).toFixed(2)}× of medians; per round ` +
        `${perRound('naive')
          .map((x) => `${x.toFixed(2)}×`)
          .join(', ')} (goal ≥ 1.5×). ` +
        `p99 push ${p.p99.toFixed(2)} ms vs naive ${n.p99.toFixed(2)} ms (goal: no worse); ` +
        `postgres CPU per task push ${p.postgresPerRequest.toFixed(0)} µs vs naive ${n.postgresPerRequest.toFixed(0)} µs (goal: no more).` +
        (contended ? `\n${contended} run(s) contended by other processes: re-run on a quiet machine.` : ''),
    );
    if (celery.length > 0) {
      const ratios = results.push.map((r, i) => r.rps / celery[i]!.drain.perSecond);
      const celeryCpu = celery.map((c) => (c.drain.workerCpuUs ?? 0) + (c.drain.redisCpuUs ?? 0));
      const pushCpu = results.push.map((r) => ((r.server + r.postgres) / r.rps) * 1e6);
      console.log(
        `\nAgainst Celery (bench/celery.bench.ts, ${celeryTasks} no-op tasks, prefork worker, in each round): ` +
          `drain ${celery.map((c) => c.drain.perSecond.toFixed(0)).join(', ')} tasks/s; ` +
          `push path / Celery drain ${ratios.map((x) => `${x.toFixed(2)}×`).join(', ')}, median ${median(ratios).toFixed(2)}× (goal ≥ 2.5×); ` +
          `CPU per no-op task, Celery worker + Redis ${median(celeryCpu).toFixed(0)} µs against push server + PostgreSQL ` +
          `${median(pushCpu).toFixed(0)} µs (${(median(celeryCpu) / median(pushCpu)).toFixed(2)}×).`,
      );
    }
    console.log(
      `\nHOT updates over the whole run (warm-ups included): ${hotRows
        .map(
          (r) =>
            `${r.relname} ${Number(r.hot)} of ${Number(r.upd)} (${((Number(r.hot) / Math.max(1, Number(r.upd))) * 100).toFixed(1)}%)`,
        )
        .join('; ')}.`,
    );
    if (failures.length > 0) {
      console.error(`\ncorrectness check failed in ${failures.length} run(s):\n${failures.join('\n')}`);
      process.exitCode = 1;
    }
  } finally {
    for (const s of servers) await s.stop();
    await issuerClose?.();
    await db.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
}

if (process.argv[2] === '--serve') {
  await serve(process.argv[3] as Kind, JSON.parse(process.argv[4] ?? '{}') as ServeOptions);
} else {
  await main();
}

// The chaos run (issue 16): N tasks flow through an external emulator (`backend emulator` on its
// own data directory) and the service (`backend serve`, PostgreSQL) while, at seeded random
// moments, the service is killed with SIGKILL and restarted, the emulator is killed with SIGKILL and
// restarted on its data directory, and a share of handler calls fails transiently. At the end it
// checks that nothing was lost and nothing done twice, prints the figures, and exits 1 on any
// violation. Bounded: a hard timeout stops everything.
//
//   node bench/chaos.bench.ts                       short run: 1,000 tasks, 3 + 2 kills (CI)
//   node bench/chaos.bench.ts --tasks 100000 --rate 100 --service-kills 20 --emulator-kills 10 \
//     --timeout 3600                                long run; RSS of both processes every 10 s
//   --seed N (repeat a run), --failure-rate 0.1
//   --restart-postgres                              restarts PostgreSQL once, at a seeded moment:
//     on a throwaway cluster the run creates (pg_createcluster on a free port, as root) and drops,
//     never on the shared server; --postgres-cluster VERSION/NAME uses an existing cluster instead
//     (one nobody else is connected to)
//
// The tasks (bench/chaos-registry.ts, test-only; bench/chaos-service.ts swaps that registry in for
// the service process): chaos.effect (transactional; one row in chaos_effects, a table with no
// unique key, so a duplicate would show), chaos.keyed_effect (a plain task; keyed effect, refused
// duplicates counted), and the real credits.topup (one ledger entry per payment). Half are created
// directly in the emulator with the service's enqueuer (the official client over gRPC), half are
// written to the service's transactional outbox in this script's transactions and sent by the
// service's relay; a quarter of the chaos.effect tasks spawn a child through their run's outbox.
// Pushes reach the service through a small counting proxy here, which reads each answer's
// X-Task-Outcome (succeeded, duplicate, busy, retry, dead) and counts the pushes that found the
// service dead. PostgreSQL from BENCH_DATABASE_URL (default the local server), or the cluster of
// bench/chaos-postgres.ts with --restart-postgres; the script creates and drops its own database.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { systemClock } from '../src/clock.ts';
import type { Db } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { openPostgres } from '../src/db/postgres.ts';
import { createLogger } from '../src/logger.ts';
import { createCloudClients } from '../src/tasks/cloud-clients.ts';
import { type EnqueueTarget, TaskEnqueuer } from '../src/tasks/enqueue.ts';
import {
  type Cluster,
  createOwnCluster,
  dropCluster,
  dropLeftoverClusters,
  restartCluster,
  useCluster,
} from './chaos-postgres.ts';
import { CHAOS_TABLES_SQL } from './chaos-registry.ts';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '50' },
    'service-kills': { type: 'string', default: '3' },
    'emulator-kills': { type: 'string', default: '2' },
    'failure-rate': { type: 'string', default: '0.1' },
    seed: { type: 'string' },
    timeout: { type: 'string', default: '180' },
    'rss-every': { type: 'string', default: '10' },
    'restart-postgres': { type: 'boolean', default: false },
    'postgres-cluster': { type: 'string' },
    accounts: { type: 'string', default: '10' },
  },
});

const N = Number(args.tasks);
const RATE = Number(args.rate);
const SERVICE_KILLS = Number(args['service-kills']);
const EMULATOR_KILLS = Number(args['emulator-kills']);
const FAILURE_RATE = Number(args['failure-rate']);
const SEED = args.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(args.seed);
const TIMEOUT_MS = Number(args.timeout) * 1000;
const RSS_EVERY_MS = Number(args['rss-every']) * 1000;
const ACCOUNTS = Number(args.accounts);
const RESTART_POSTGRES = args['restart-postgres'];
const NAMED_CLUSTER = args['postgres-cluster'];
if ((RESTART_POSTGRES || NAMED_CLUSTER) && process.env.BENCH_DATABASE_URL) {
  process.stderr.write(
    'chaos: --restart-postgres and --postgres-cluster run on a cluster of their own, not on BENCH_DATABASE_URL ' +
      '(which may be a server others use): unset it\n',
  );
  process.exit(2);
}
const PROJECT = 'chaos';
const LOCATION = 'local';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
const say = (line: string) => process.stdout.write(`[${elapsed().padStart(6)} s] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: small, seeded, good enough to pick moments and mixes. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(SEED);

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

// ---------------------------------------------------------------------------------------------
// Figures

const figures = {
  serviceKills: 0,
  emulatorKills: 0,
  serviceStarts: 0,
  emulatorStarts: 0,
  postgresRestarts: 0,
  unplannedExits: 0,
  unplannedServiceExits: 0,
  enqueueRetries: 0,
  outcomes: new Map<string, number>(),
};
const countOutcome = (o: string) => figures.outcomes.set(o, (figures.outcomes.get(o) ?? 0) + 1);
let enqueueStarted = 0;
let enqueuedAt = 0;
let drainedAt = 0;
let lastChaosAt = 0;
const rss: Array<{ at: number; service: number | undefined; emulator: number | undefined }> = [];
/** 503 answers of the service by error code: how many, the first and the last (ms since epoch). */
const answers503 = new Map<string, { n: number; first: number; last: number }>();
/** The PostgreSQL restart, as the service lived it (times in ms since epoch; 0: not seen). */
const pgRestart = {
  /** pg_ctlcluster restart started and returned (it polls the new server before returning). */
  began: 0,
  commandEnded: 0,
  /** PostgreSQL itself, probed with `SELECT 1` every 50 ms: the first failure and the first success after it. */
  dbDownAt: 0,
  dbUpAt: 0,
  /** The service's /readyz, polled every 100 ms over the same time. */
  readyzPolls: 0,
  readyzFailed: 0,
  readyAfterUpAt: 0,
  recovered: false,
  /** Push answers from the first failed probe to the first push that succeeded after PostgreSQL was back. */
  firstSuccessAfterUp: 0,
  windowAnswers: new Map<string, number>(),
  servicePid: 0 as number | undefined,
  serviceKept: false,
  serviceExitedByItself: 0,
};

// ---------------------------------------------------------------------------------------------
// Set-up: database, ports, data directories

// The cluster --restart-postgres restarts: made for this run (and dropped by cleanup(), which also
// runs on a timeout, a signal or an uncaught error), or named. Never the server of BENCH_DATABASE_URL.
let cluster: Cluster | undefined;
try {
  if (NAMED_CLUSTER) {
    cluster = await useCluster(NAMED_CLUSTER);
  } else if (RESTART_POSTGRES) {
    const leftovers = await dropLeftoverClusters();
    if (leftovers.length) say(`dropped clusters left by chaos runs that were killed: ${leftovers.join(', ')}`);
    const t = Date.now();
    cluster = await createOwnCluster(await freePort());
    say(
      `cluster ${cluster.version}/${cluster.name} created and started on 127.0.0.1:${cluster.port} in ${((Date.now() - t) / 1000).toFixed(1)} s`,
    );
  }
} catch (err) {
  process.stderr.write(`chaos: ${err instanceof Error ? err.message : err}\n`);
  process.exit(2);
}

const workDir = mkdtempSync(join(tmpdir(), 'chaos-'));
const pgUrl = cluster?.url ?? process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `chaos_${process.pid}`;
const dbUrl = (() => {
  const u = new URL(pgUrl);
  u.pathname = `/${dbName}`;
  return u.toString();
})();
const admin = new pg.Client({ connectionString: pgUrl });
const [servicePort, proxyPort, grpcPort, httpPort] = [
  await freePort(),
  await freePort(),
  await freePort(),
  await freePort(),
];
const pushBase = `http://127.0.0.1:${proxyPort}`;

say(
  `seed ${SEED}: ${N} tasks at ${RATE}/s, ${SERVICE_KILLS} service kills, ${EMULATOR_KILLS} emulator kills, ` +
    `${FAILURE_RATE * 100}% handler failures, timeout ${TIMEOUT_MS / 1000} s; load average ${loadavg()[0]!.toFixed(1)}`,
);
say(`work directory ${workDir}, database ${dbName}`);

let db: Db | undefined;
let service: ChildProcess | undefined;
let emulator: ChildProcess | undefined;
let stopping = false;
const proxyServer = http.createServer();
let cleanedUp = false;
// If the script dies of an error, its children must not outlive it.
process.on('exit', () => {
  for (const child of [service, emulator]) if (child && child.exitCode === null) child.kill('SIGKILL');
});

/** After a failure the work directory (both processes' logs, and the cluster's) is kept to be read. */
let keepWorkDir = false;

async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  stopping = true;
  for (const child of [service, emulator]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), sleep(5_000).then(() => child.kill('SIGKILL'))]);
    }
  }
  proxyServer.close();
  proxyServer.closeAllConnections();
  await db?.close().catch(() => {});
  await admin.end().catch(() => {});
  if (cluster?.owned) {
    if (keepWorkDir) {
      try {
        copyFileSync(
          `/var/log/postgresql/postgresql-${cluster.version}-${cluster.name}.log`,
          join(workDir, 'postgresql.log'),
        );
      } catch {}
    }
    // The database goes with it.
    await dropCluster(cluster).catch((err: unknown) => say(`could not drop cluster ${cluster!.name}: ${err}`));
  } else {
    const dropper = new pg.Client({ connectionString: pgUrl });
    dropper.on('error', () => {});
    await dropper
      .connect()
      .then(() => dropper.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`))
      .catch((err: unknown) => say(`could not drop ${dbName}: ${err}`));
    await dropper.end().catch(() => {});
  }
  if (keepWorkDir) say(`logs kept in ${workDir}`);
  else rmSync(workDir, { recursive: true, force: true });
}

const hardStop = setTimeout(async () => {
  say(`TIMEOUT after ${TIMEOUT_MS / 1000} s`);
  await report(false).catch((err: unknown) => say(`report failed: ${err}`));
  keepWorkDir = true;
  await cleanup();
  process.exit(1);
}, TIMEOUT_MS);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping`);
    cleanup().finally(() => process.exit(130));
  });
}
// A bug or an unexpected failure of this script: still stop the processes and drop the cluster.
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.once(event, (err: unknown) => {
    say(`${event}: ${err instanceof Error ? err.stack : err}`);
    keepWorkDir = true;
    cleanup().finally(() => process.exit(1));
  });
}

await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
await admin.query(`CREATE DATABASE ${dbName}`);
// Not kept open: an idle client whose server restarts emits an error nobody would catch.
await admin.end();
db = await openPostgres({ url: dbUrl });
await migrate(db);
await db.exec(CHAOS_TABLES_SQL);
const accountIds = (
  await db.query<{ id: number }>(
    `INSERT INTO accounts (plan) SELECT NULL FROM generate_series(1, ${ACCOUNTS}) RETURNING id`,
  )
).rows.map((r) => r.id);

// ---------------------------------------------------------------------------------------------
// The counting proxy between the emulator's pushes and the service

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
proxyServer.on('request', (req, res) => {
  const upstream = http.request(
    { host: '127.0.0.1', port: servicePort, method: req.method, path: req.url, headers: req.headers, agent },
    (answer) => {
      const at = Date.now();
      const outcome = String(answer.headers['x-task-outcome'] ?? `http ${answer.statusCode}`);
      countOutcome(outcome);
      if (pgRestart.dbDownAt && !pgRestart.firstSuccessAfterUp) {
        if (outcome === 'succeeded' && pgRestart.dbUpAt) pgRestart.firstSuccessAfterUp = at;
        else pgRestart.windowAnswers.set(outcome, (pgRestart.windowAnswers.get(outcome) ?? 0) + 1);
      }
      if (answer.statusCode === 503) {
        // Which 503 (database unavailable, overloaded): the error code in the body.
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          let code = 'unknown';
          try {
            code = String(JSON.parse(Buffer.concat(chunks).toString('utf8'))?.error?.code ?? 'unknown');
          } catch {}
          const seen = answers503.get(code) ?? { n: 0, first: at, last: at };
          seen.n++;
          seen.last = at;
          answers503.set(code, seen);
        });
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    },
  );
  upstream.on('error', () => {
    // The service is down or died mid-request: what Cloud Tasks sees as a failed attempt.
    countOutcome('service unreachable');
    if (!res.headersSent) res.writeHead(503, { 'retry-after': '1' }).end();
    else res.destroy();
  });
  req.pipe(upstream);
});
proxyServer.listen(proxyPort, '127.0.0.1');
await once(proxyServer, 'listening');

// ---------------------------------------------------------------------------------------------
// The two processes

const serviceLog = join(workDir, 'service.log');
const emulatorLog = join(workDir, 'emulator.log');

/**
 * Restarts after an unplanned exit, pending. Whoever starts the process next (this timer or the
 * chaos loop after a kill) cancels the other: two starts would leave an orphan holding the port,
 * and every later start would then die of EADDRINUSE.
 */
const pendingRestart: { service?: NodeJS.Timeout; emulator?: NodeJS.Timeout } = {};

function launch(name: 'service' | 'emulator', argv: string[], env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  clearTimeout(pendingRestart[name]);
  const fd = openSync(logFile, 'a');
  const child = spawn(NODE, argv, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.on('exit', (code, signal) => {
    const current = name === 'service' ? service : emulator;
    if (stopping || signal === 'SIGKILL' || child !== current) return;
    figures.unplannedExits++;
    if (name === 'service') figures.unplannedServiceExits++;
    say(`${name} exited by itself (code ${code}, signal ${signal}); restarting. Its last words: ${lastWords(logFile)}`);
    pendingRestart[name] = setTimeout(() => (name === 'service' ? startServiceProcess() : startEmulatorProcess()), 500);
  });
  return child;
}

/** The last line of a log that is not a JSON record: what a crash printed (first line of its error). */
function lastWords(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const i = lines.findLastIndex((l) => /^\w*(Error|error)\b|^error:|Unhandled|throw /.test(l.trim()));
    return i < 0
      ? (lines.at(-1)?.slice(0, 300) ?? '')
      : lines
          .slice(i, i + 2)
          .join(' ')
          .slice(0, 300);
  } catch {
    return '(no log)';
  }
}

function startEmulatorProcess(): void {
  figures.emulatorStarts++;
  emulator = launch(
    'emulator',
    [
      'bin/backend.js',
      'emulator',
      '--data-dir',
      join(workDir, 'emulator'),
      '--grpc-port',
      String(grpcPort),
      '--http-port',
      String(httpPort),
    ],
    { ...process.env, LOG_FORMAT: 'json' },
    emulatorLog,
  );
}

const serviceEnv: NodeJS.ProcessEnv = {
  ...process.env,
  DATABASE_URL: dbUrl,
  DATA_DIR: join(workDir, 'service'),
  TASKS_BACKEND: 'emulator',
  CLOUD_TASKS_EMULATOR_HOST: `127.0.0.1:${grpcPort}`,
  TASKS_OIDC_ISSUER: `http://127.0.0.1:${httpPort}`,
  GCP_PROJECT_ID: PROJECT,
  GCP_LOCATION: LOCATION,
  PORT: String(servicePort),
  HOST: '127.0.0.1',
  PUBLIC_BASE_URL: `http://127.0.0.1:${servicePort}`,
  TASKS_PUSH_BASE_URL: pushBase,
  LOG_LEVEL: 'warn',
  LOG_FORMAT: 'json',
  CHAOS_SEED: String(SEED),
  CHAOS_FAILURE_RATE: String(FAILURE_RATE),
};

function startServiceProcess(): void {
  figures.serviceStarts++;
  service = launch('service', ['bench/chaos-service.ts', 'serve'], serviceEnv, serviceLog);
}

function kill(child: ChildProcess | undefined): Promise<unknown> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  return exited;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} did not happen within ${ms / 1000} s`);
}

const clients = createCloudClients({ emulator: `127.0.0.1:${grpcPort}`, projectId: PROJECT });
const queuePath = (q: string) => clients.tasks.queuePath(PROJECT, LOCATION, q);

startEmulatorProcess();
startServiceProcess();
await waitFor('the service ready', async () => (await fetch(`http://127.0.0.1:${servicePort}/readyz`)).ok);
await waitFor('the chaos queue synced', async () => {
  await clients.tasks.getQueue({ name: queuePath('chaos') });
  return true;
});
say('emulator and service up, queues synced');

// ---------------------------------------------------------------------------------------------
// What to enqueue

interface Planned {
  n: number;
  task: 'chaos.effect' | 'chaos.keyed_effect' | 'credits.topup';
  payload: Record<string, unknown>;
  key: string;
  via: 'direct' | 'outbox';
}
const plan: Planned[] = [];
for (let n = 0; n < N; n++) {
  const via = random() < 0.5 ? 'direct' : 'outbox';
  if (n % 20 === 0) {
    const pi = `pi_chaos_${SEED}_${n}`;
    const accountId = accountIds[n % accountIds.length]!;
    plan.push({
      n,
      task: 'credits.topup',
      payload: { accountId, credits: 1 + (n % 7), paymentIntentId: pi },
      key: `stripe:pi:${pi}`,
      via,
    });
  } else if (n % 100 === 7) {
    plan.push({ n, task: 'chaos.effect', payload: { n, poison: true }, key: `c-${n}`, via });
  } else if (n % 2 === 0) {
    plan.push({ n, task: 'chaos.effect', payload: n % 4 === 2 ? { n, spawn: true } : { n }, key: `c-${n}`, via });
  } else {
    plan.push({ n, task: 'chaos.keyed_effect', payload: { n }, key: `k-${n}`, via });
  }
}
const poisonKeys = new Set(plan.filter((p) => p.payload.poison).map((p) => p.key));
const effectKeys = new Set<string>();
for (const p of plan) {
  if (p.task !== 'chaos.effect' || p.payload.poison) continue;
  effectKeys.add(p.key);
  if (p.payload.spawn) effectKeys.add(`child-${p.key}`);
}
const keyedKeys = new Set(plan.filter((p) => p.task === 'chaos.keyed_effect').map((p) => p.key));
const topups = plan.filter((p) => p.task === 'credits.topup');
const expectedRuns = plan.length + [...effectKeys].filter((k) => k.startsWith('child-')).length;

const { registry } = await import('./chaos-registry.ts');
const target: EnqueueTarget = {
  projectId: PROJECT,
  location: LOCATION,
  publicBaseUrl: pushBase,
  invokerServiceAccount: 'tasks-invoker@local.iam.gserviceaccount.com',
  audience: pushBase,
  auth: 'oidc',
  secret: undefined,
};
const enqueuer = new TaskEnqueuer({
  client: clients.tasks,
  registry,
  target,
  clock: systemClock,
  log: createLogger({ level: 'silent', format: 'json' }),
});

async function sendDirect(p: Planned): Promise<void> {
  const prepared = enqueuer.prepare(p.task, p.payload, { key: p.key });
  for (;;) {
    try {
      await enqueuer.send(prepared); // a retry after a kill finds ALREADY_EXISTS: still one task
      return;
    } catch {
      figures.enqueueRetries++;
      await sleep(300);
    }
  }
}

async function writeOutbox(batch: Planned[]): Promise<void> {
  for (;;) {
    try {
      await db!.transaction(async (tx) => {
        for (const p of batch) await enqueuer.enqueueByName(p.task, p.payload, { key: p.key, tx });
      });
      return;
    } catch {
      figures.enqueueRetries++;
      await sleep(300);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Chaos: kills and restarts at seeded moments while the tasks are enqueued

const enqueueSeconds = N / RATE;
const killWindow = [2, Math.max(5, enqueueSeconds + 5)] as const;
type Event = { at: number; what: 'service' | 'emulator' | 'postgres' };
const events: Event[] = [
  ...Array.from({ length: SERVICE_KILLS }, () => ({ what: 'service' as const })),
  ...Array.from({ length: EMULATOR_KILLS }, () => ({ what: 'emulator' as const })),
  ...(args['restart-postgres'] ? [{ what: 'postgres' as const }] : []),
]
  .map((e) => ({ ...e, at: (killWindow[0] + random() * (killWindow[1] - killWindow[0])) * 1000 }))
  .sort((a, b) => a.at - b.at);
say(`chaos at ${events.map((e) => `${(e.at / 1000).toFixed(1)} s ${e.what}`).join(', ')} (after the first enqueue)`);

const chaosStart = Date.now();
async function runChaos(): Promise<void> {
  for (const event of events) {
    await sleep(Math.max(0, chaosStart + event.at - Date.now()));
    const down = 200 + random() * 1300; // how long it stays dead
    if (event.what === 'service') {
      await kill(service);
      figures.serviceKills++;
      say(`SIGKILL service (down ${Math.round(down)} ms)`);
      await sleep(down);
      startServiceProcess();
    } else if (event.what === 'emulator') {
      await kill(emulator);
      figures.emulatorKills++;
      say(`SIGKILL emulator (down ${Math.round(down)} ms)`);
      await sleep(down);
      startEmulatorProcess();
    } else {
      await restartPostgres(cluster!);
    }
    lastChaosAt = Date.now();
  }
}

const readyz = async (timeoutMs = 5000) =>
  (await fetch(`http://127.0.0.1:${servicePort}/readyz`, { signal: AbortSignal.timeout(timeoutMs) })).ok;

/**
 * Restarts the run's cluster while pushes keep coming, and watches PostgreSQL and the service
 * live through it: PostgreSQL probed every 50 ms (when was it really down), /readyz every 100 ms,
 * until PostgreSQL is back and the service ready again, at most 60 s after pg_ctlcluster returned.
 * Awaited by the chaos loop, so no kill falls inside. Asynchronous on purpose: the counting proxy
 * lives in this process and must go on answering.
 */
async function restartPostgres(c: Cluster): Promise<void> {
  // On a service that is up: one started after a kill may still be booting.
  await waitFor('the service ready before the PostgreSQL restart', readyz);
  pgRestart.servicePid = service?.pid;
  const exitsBefore = figures.unplannedServiceExits;
  const probe = new pg.Pool({ connectionString: c.url, max: 1, connectionTimeoutMillis: 1000 });
  probe.on('error', () => {});
  probe.on('connect', (client) => client.on('error', () => {}));
  pgRestart.began = Date.now();
  say(`pg_ctlcluster ${c.version} ${c.name} restart`);
  const restarted = restartCluster(c).finally(() => {
    pgRestart.commandEnded = Date.now();
  });
  const giveUp = () => pgRestart.commandEnded && Date.now() - pgRestart.commandEnded > 60_000;
  const watchDb = (async () => {
    while (!pgRestart.dbUpAt && !giveUp()) {
      const ok = await probe.query('SELECT 1').then(
        () => true,
        () => false,
      );
      if (!ok && !pgRestart.dbDownAt) pgRestart.dbDownAt = Date.now();
      if (ok && pgRestart.dbDownAt) pgRestart.dbUpAt = Date.now();
      await sleep(50);
    }
  })();
  const watchService = (async () => {
    for (;;) {
      const ok = await readyz(2000).catch(() => false);
      pgRestart.readyzPolls++;
      if (!ok) pgRestart.readyzFailed++;
      if (ok && pgRestart.dbUpAt) {
        pgRestart.readyAfterUpAt = Date.now();
        return true;
      }
      if (giveUp()) return false;
      await sleep(100);
    }
  })();
  await restarted;
  figures.postgresRestarts++;
  say(`pg_ctlcluster returned after ${((pgRestart.commandEnded - pgRestart.began) / 1000).toFixed(1)} s`);
  await watchDb;
  pgRestart.recovered = await watchService;
  await probe.end().catch(() => {});
  pgRestart.serviceExitedByItself = figures.unplannedServiceExits - exitsBefore;
  pgRestart.serviceKept = pgRestart.servicePid !== undefined && service?.pid === pgRestart.servicePid;
  const at = (t: number) => `+${((t - pgRestart.began) / 1000).toFixed(1)} s`;
  say(
    pgRestart.recovered
      ? `PostgreSQL down ${at(pgRestart.dbDownAt)} to ${at(pgRestart.dbUpAt)}; service ready at ${at(pgRestart.readyAfterUpAt)}`
      : 'service NOT ready 60 s after the restart',
  );
}

function rssOf(child: ChildProcess | undefined): number | undefined {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
const rssTimer = setInterval(() => {
  const sample = { at: Date.now() - started, service: rssOf(service), emulator: rssOf(emulator) };
  rss.push(sample);
  if (N >= 20_000) {
    say(`RSS service ${sample.service?.toFixed(0) ?? '-'} MB, emulator ${sample.emulator?.toFixed(0) ?? '-'} MB`);
  }
}, RSS_EVERY_MS);

enqueueStarted = Date.now();
const chaos = runChaos();
{
  const tickMs = 250;
  const perTick = Math.max(1, Math.round((RATE * tickMs) / 1000));
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < plan.length; i += perTick) {
    const slice = plan.slice(i, i + perTick);
    const outbox = slice.filter((p) => p.via === 'outbox');
    if (outbox.length > 0) inFlight.push(writeOutbox(outbox));
    for (const p of slice) if (p.via === 'direct') inFlight.push(sendDirect(p));
    await sleep(Math.max(0, enqueueStarted + ((i + perTick) / RATE) * 1000 - Date.now()));
  }
  await Promise.all(inFlight);
}
enqueuedAt = Date.now();
say(`enqueued ${plan.length} tasks in ${((enqueuedAt - enqueueStarted) / 1000).toFixed(1)} s`);
await chaos;
say('chaos over; draining');

// ---------------------------------------------------------------------------------------------
// Drain: every run finished, the outbox empty, and the emulator's queues empty

async function state() {
  const { rows } = await db!.query<{
    unfinished: number;
    runs: number;
    outbox: number;
    effects: number;
    keyed: number;
  }>(
    `SELECT (SELECT count(*)::int FROM task_runs WHERE status IN ('running', 'failed')) AS unfinished,
            (SELECT count(*)::int FROM task_runs WHERE task IN ('chaos.effect', 'chaos.keyed_effect', 'credits.topup')) AS runs,
            (SELECT count(*)::int FROM task_outbox) AS outbox,
            (SELECT count(DISTINCT key)::int FROM chaos_effects) AS effects,
            (SELECT count(*)::int FROM chaos_keyed_effects) AS keyed`,
  );
  return rows[0]!;
}

async function emulatorQueued(): Promise<number> {
  let n = 0;
  for (const q of ['chaos', 'credits', 'whatsapp']) {
    const [tasks] = await clients.tasks.listTasks({ parent: queuePath(q), pageSize: 1000 }, { autoPaginate: false });
    n += tasks.length;
  }
  return n;
}

let lastProgress = '';
let polls = 0;
for (;;) {
  const s = await state().catch(() => undefined);
  const queued = s && s.unfinished === 0 && s.outbox === 0 ? await emulatorQueued().catch(() => -1) : -1;
  if (s) {
    const progress = `runs ${s.runs}/${expectedRuns}, unfinished ${s.unfinished}, outbox ${s.outbox}, effects ${s.effects + s.keyed}/${effectKeys.size + keyedKeys.size}, in the emulator ${queued < 0 ? '?' : queued}`;
    if (progress !== lastProgress && polls++ % 5 === 0) say(progress);
    lastProgress = progress;
    if (s.runs === expectedRuns && s.unfinished === 0 && s.outbox === 0 && queued === 0) {
      drainedAt = Date.now();
      break;
    }
  }
  await sleep(1000);
}
say('drained');
clearTimeout(hardStop);
clearInterval(rssTimer);
const ok = await report(true);
keepWorkDir = !ok;
await cleanup();
process.exit(ok ? 0 : 1);

// ---------------------------------------------------------------------------------------------
// Checks and figures

async function report(drained: boolean): Promise<boolean> {
  const violations: string[] = [];
  const q = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
    (await db!.query<R>(sql, params)).rows;

  // 1. Every effect exactly once; none for a poison task.
  const effectRows = await q<{ key: string; n: number }>(
    'SELECT key, count(*)::int AS n FROM chaos_effects GROUP BY key',
  );
  const effectCount = new Map(effectRows.map((r) => [r.key, r.n]));
  const keyedRows = await q<{ key: string }>('SELECT key FROM chaos_keyed_effects');
  const keyed = new Set(keyedRows.map((r) => r.key));
  const missing = [...effectKeys]
    .filter((k) => !effectCount.has(k))
    .concat([...keyedKeys].filter((k) => !keyed.has(k)));
  const doubled = [...effectCount].filter(([, n]) => n > 1);
  const unexpected = [...effectCount.keys()]
    .filter((k) => !effectKeys.has(k))
    .concat([...keyed].filter((k) => !keyedKeys.has(k)));
  if (missing.length) violations.push(`${missing.length} effects missing (lost): ${missing.slice(0, 10).join(', ')}`);
  if (doubled.length)
    violations.push(
      `${doubled.length} effects done more than once: ${doubled
        .slice(0, 10)
        .map(([k, n]) => `${k}×${n}`)
        .join(', ')}`,
    );
  if (unexpected.length)
    violations.push(
      `${unexpected.length} effects nobody asked for (poison or unknown): ${unexpected.slice(0, 10).join(', ')}`,
    );

  // 2. Every run succeeded, or is dead on purpose (a poison task); one run per (task, key).
  const runs = await q<{ task: string; key: string; status: string; attempts: number; last_error: string | null }>(
    `SELECT task, idempotency_key AS key, status, attempts, last_error FROM task_runs
      WHERE task IN ('chaos.effect', 'chaos.keyed_effect', 'credits.topup')`,
  );
  const notDone = runs.filter((r) => !(r.status === 'succeeded' || (r.status === 'dead' && poisonKeys.has(r.key))));
  if (notDone.length) {
    violations.push(
      `${notDone.length} runs neither succeeded nor deliberately dead: ${notDone
        .slice(0, 5)
        .map((r) => `${r.task} ${r.key} ${r.status} ${r.last_error ?? ''}`)
        .join('; ')}`,
    );
  }
  const deadPoison = runs.filter((r) => r.status === 'dead' && poisonKeys.has(r.key)).length;
  if (drained && deadPoison !== poisonKeys.size)
    violations.push(`${poisonKeys.size - deadPoison} poison tasks not dead`);
  if (drained && runs.length !== expectedRuns) violations.push(`${runs.length} runs, expected ${expectedRuns}`);
  const otherBad = await q<{ task: string; status: string; n: number }>(
    `SELECT task, status, count(*)::int AS n FROM task_runs
      WHERE task NOT IN ('chaos.effect', 'chaos.keyed_effect', 'credits.topup') AND status <> 'succeeded' GROUP BY 1, 2`,
  );
  for (const r of otherBad) violations.push(`${r.n} ${r.task} runs ${r.status}`);

  // 3. The outbox is empty (nothing waiting, nothing parked).
  const [outbox] = await q<{ n: number; parked: number }>(
    'SELECT count(*)::int AS n, count(parked_at)::int AS parked FROM task_outbox',
  );
  if (outbox!.n > 0) violations.push(`outbox holds ${outbox!.n} rows (${outbox!.parked} parked)`);

  // 4. Credits: one ledger entry per payment, of its amount; every balance equals its ledger.
  const ledger = await q<{ key: string; n: number; amount: number }>(
    `SELECT idempotency_key AS key, count(*)::int AS n, sum(amount)::int AS amount FROM credit_ledger
      WHERE kind = 'topup' GROUP BY 1`,
  );
  const byKey = new Map(ledger.map((r) => [r.key, r]));
  for (const t of topups) {
    const entry = byKey.get(t.key);
    if (!entry) violations.push(`top-up ${t.key} not credited`);
    else if (entry.n !== 1 || entry.amount !== t.payload.credits) {
      violations.push(
        `top-up ${t.key}: ${entry.n} entries, ${entry.amount} credits (expected 1, ${t.payload.credits})`,
      );
    }
  }
  const balances = await q<{ id: number; balance: number; ledger: number }>(
    `SELECT a.id, a.balance::int AS balance, coalesce(sum(l.amount), 0)::int AS ledger
       FROM accounts a LEFT JOIN credit_ledger l ON l.account_id = a.id GROUP BY a.id`,
  );
  for (const b of balances) {
    if (b.balance !== b.ledger) violations.push(`account ${b.id}: balance ${b.balance}, ledger ${b.ledger}`);
  }
  const expectedCredits = topups.reduce((sum, t) => sum + Number(t.payload.credits), 0);
  const totalBalance = balances.reduce((sum, b) => sum + b.balance, 0);
  if (drained && totalBalance !== expectedCredits)
    violations.push(`balances sum to ${totalBalance}, top-ups to ${expectedCredits}`);

  // 5. No process died but by our SIGKILLs; the service lived through the PostgreSQL restart by
  // itself (ready again, never exited).
  if (figures.unplannedExits) {
    violations.push(
      `${figures.unplannedExits} process exits not caused by a kill (${figures.unplannedServiceExits} of the service)`,
    );
  }
  if (pgRestart.commandEnded) {
    if (!pgRestart.recovered) violations.push('the service was not ready again within 60 s of the PostgreSQL restart');
    if (pgRestart.serviceExitedByItself) {
      violations.push(`the service exited by itself ${pgRestart.serviceExitedByItself}× during the PostgreSQL restart`);
    }
  }

  // Figures
  const [refusals] = await q<{ n: number }>('SELECT count(*)::int AS n FROM chaos_refusals');
  const [attempts] = await q<{ n: number }>(
    `SELECT coalesce(sum(attempts), 0)::int AS n FROM task_runs WHERE task IN ('chaos.effect', 'chaos.keyed_effect', 'credits.topup')`,
  );
  const deliveries = [...figures.outcomes.values()].reduce((a, b) => a + b, 0);
  const outcome = (k: string) => figures.outcomes.get(k) ?? 0;
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const rssRange = (pick: 'service' | 'emulator') => {
    const v = rss.map((r) => r[pick]).filter((x): x is number => x !== undefined);
    return v.length
      ? `${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)} MB (${v.length} samples, last ${v.at(-1)!.toFixed(0)})`
      : 'not sampled';
  };
  const lines = [
    '',
    `| figure | value |`,
    `|---|---|`,
    `| seed | ${SEED} |`,
    `| tasks enqueued (direct / outbox) | ${plan.length} (${plan.filter((p) => p.via === 'direct').length} / ${plan.filter((p) => p.via === 'outbox').length}) |`,
    `| runs (with ${expectedRuns - plan.length} children spawned through the outbox) | ${runs.length} of ${expectedRuns} |`,
    `| effects exactly once (transactional + keyed) | ${effectKeys.size + keyedKeys.size - missing.length - doubled.length} of ${effectKeys.size + keyedKeys.size} |`,
    `| top-ups credited once / balances equal to the ledger | ${topups.length - violations.filter((v) => v.startsWith('top-up')).length} of ${topups.length} / ${balances.filter((b) => b.balance === b.ledger).length} of ${balances.length} |`,
    `| deliberately dead (poison) | ${deadPoison} of ${poisonKeys.size} |`,
    `| service SIGKILLs / starts | ${figures.serviceKills} / ${figures.serviceStarts} |`,
    `| emulator SIGKILLs / starts | ${figures.emulatorKills} / ${figures.emulatorStarts} |`,
    `| PostgreSQL restarts | ${figures.postgresRestarts}${cluster ? ` (cluster ${cluster.version}/${cluster.name} on port ${cluster.port}${cluster.owned ? ', made for this run' : ''})` : ''} |`,
    ...postgresLines(),
    `| unplanned exits | ${figures.unplannedExits} |`,
    `| pushes (deliveries) | ${deliveries} |`,
    `| redeliveries (pushes beyond one per run) | ${deliveries - runs.length} |`,
    `| attempts recorded on runs | ${attempts!.n} |`,
    `| answers: succeeded / duplicate / busy / retry / dead | ${outcome('succeeded')} / ${outcome('duplicate')} / ${outcome('busy')} / ${outcome('retry')} / ${outcome('dead')} |`,
    `| pushes that found the service dead | ${outcome('service unreachable')} |`,
    `| duplicates refused: at the claim (duplicate) / by the effect's key | ${outcome('duplicate')} / ${refusals!.n} |`,
    `| createTask or outbox writes retried by the script | ${figures.enqueueRetries} |`,
    `| enqueue time | ${s(enqueuedAt - enqueueStarted)} |`,
    `| time to drain after the last enqueue / after the last kill | ${drained ? `${s(drainedAt - enqueuedAt)} / ${s(drainedAt - lastChaosAt)}` : 'not drained'} |`,
    `| whole run | ${s(Date.now() - started)} |`,
    `| service RSS | ${rssRange('service')} |`,
    `| emulator RSS | ${rssRange('emulator')} |`,
    `| load average (1 min) at the end | ${loadavg()[0]!.toFixed(1)} |`,
    `| 503 answers by error code (first–last, seconds into the run) | ${
      [...answers503]
        .map(([code, a]) => `${code} ${a.n} (${s(a.first - started)}–${s(a.last - started)})`)
        .join(', ') || 'none'
    } |`,
    '',
  ];
  const other = [...figures.outcomes.keys()].filter(
    (k) => !['succeeded', 'duplicate', 'busy', 'retry', 'dead', 'service unreachable'].includes(k),
  );
  if (other.length) lines.push(`other answers: ${other.map((k) => `${k} ×${outcome(k)}`).join(', ')}`, '');
  process.stdout.write(lines.join('\n'));
  if (violations.length) {
    say(`FAILED: ${violations.length} violations`);
    for (const v of violations) process.stdout.write(`  - ${v}\n`);
    process.stdout.write(
      `\nlast service log lines:\n${tail(serviceLog)}\nlast emulator log lines:\n${tail(emulatorLog)}\n`,
    );
    return false;
  }
  say('OK: nothing lost, nothing done twice');
  return drained;
}

/** The report's rows about the PostgreSQL restart (none without one). */
function postgresLines(): string[] {
  if (!pgRestart.began) return [];
  const r = pgRestart;
  const at = (t: number) => (t ? `+${((t - r.began) / 1000).toFixed(1)} s` : 'never');
  const span = (a: number, b: number) => (a && b ? `${((b - a) / 1000).toFixed(1)} s` : '?');
  const db = answers503.get('DATABASE_UNAVAILABLE');
  const dbAfter = db && db.last >= r.began ? db : undefined;
  const window = [...r.windowAnswers].map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  return [
    `| PostgreSQL restart: pg_ctlcluster restart (fast stop, start) | at ${((r.began - started) / 1000).toFixed(1)} s into the run; returned after ${span(r.began, r.commandEnded)} |`,
    `| PostgreSQL down (SELECT 1 every 50 ms failing) | ${at(r.dbDownAt)} to ${at(r.dbUpAt)}: ${span(r.dbDownAt, r.dbUpAt)} |`,
    `| pushes answered 503 DATABASE_UNAVAILABLE (retried by the queue) | ${dbAfter ? `${dbAfter.n}, ${at(dbAfter.first)} to ${at(dbAfter.last)} (${span(dbAfter.first, dbAfter.last)})` : 0} |`,
    `| push answers from PostgreSQL down to the first success after it was back | ${window} |`,
    `| first push succeeded after PostgreSQL was back | ${at(r.firstSuccessAfterUp)} (${span(r.dbUpAt, r.firstSuccessAfterUp)} after) |`,
    `| /readyz polls (every 100 ms) that failed / ready again after PostgreSQL was back | ${r.readyzFailed} of ${r.readyzPolls} / ${at(r.readyAfterUpAt)} |`,
    `| the service process through the restart | ${r.serviceKept ? `the same process (pid ${r.servicePid}), never restarted` : 'restarted'}; exited by itself ${r.serviceExitedByItself}× |`,
  ];
}

/** The last lines worth reading: not the injected failures, not the request log, not the banner. */
function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const telling = lines.filter(
      (l) =>
        /^(\{|emulator |received )/.test(l) &&
        !l.includes('injected transient failure') &&
        !l.includes('"httpRequest"'),
    );
    return telling.slice(-15).join('\n') || '(nothing but injected failures and requests)';
  } catch {
    return '(no log)';
  }
}

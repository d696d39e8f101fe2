// Enqueue latency and throughput against the embedded emulator (gRPC, the official client):
// direct createTask, and through the transactional outbox (the insert in the caller's transaction,
// then the relay), on PGlite and on PostgreSQL (BENCH_DATABASE_URL, default the local server).
// Run: node bench/enqueue.bench.ts [n]   (n enqueues per measurement, default 2000; loopback only)
import { loadavg } from 'node:os';
import { startEmulator } from '@backend/cloud-tasks-emulator';
import pg from 'pg';
import { TestClock } from '../src/clock.ts';
import type { Db } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { openPglite } from '../src/db/pglite.ts';
import { openPostgres } from '../src/db/postgres.ts';
import { createLogger } from '../src/logger.ts';
import { queues, registry } from '../src/task-registry.ts';
import { createCloudClients } from '../src/tasks/cloud-clients.ts';
import { TaskEnqueuer } from '../src/tasks/enqueue.ts';
import { OutboxRelay } from '../src/tasks/outbox-relay.ts';
import { syncQueues } from '../src/tasks/queue-sync.ts';

const n = Number(process.argv[2] ?? 2000);
const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const log = createLogger({ level: 'warn', format: 'json' });

// Nothing is dispatched: this measures the enqueue side only.
const emulator = await startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false, clock: new TestClock() });
const clients = createCloudClients({ emulator: emulator.grpcAddress, projectId: 'bench' });
const target = {
  projectId: 'bench',
  location: 'us-central1',
  publicBaseUrl: 'http://127.0.0.1:9',
  invokerServiceAccount: 'tasks-invoker@local.iam.gserviceaccount.com',
  audience: 'http://127.0.0.1:9',
  auth: 'oidc' as const,
  secret: undefined,
};
await syncQueues(clients.tasks, target, queues, { dryRun: false });
const enqueuer = new TaskEnqueuer({ client: clients.tasks, registry, target, clock: { now: Date.now }, log });

const pct = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const rows: string[] = [];
const notes: string[] = [];
function row(label: string, latencies: number[], totalMs: number, count = latencies.length) {
  rows.push(
    `| ${label} | ${count} | ${((count / totalMs) * 1000).toFixed(0)} | ${pct(latencies, 0.5).toFixed(2)} | ${pct(latencies, 0.99).toFixed(2)} |`,
  );
}
let seq = 0;
const key = () => `bench-${process.pid}-${seq++}`;

// Direct, one at a time: the latency a request handler pays.
{
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await enqueuer.enqueue('health.check', {}, { key: key() });
    lat.push(performance.now() - s);
  }
  row('direct, sequential', lat, performance.now() - t0);
}
// Direct, 32 callers at once: throughput.
{
  const lat: number[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next++ < n) {
        const s = performance.now();
        await enqueuer.enqueue('health.check', {}, { key: key() });
        lat.push(performance.now() - s);
      }
    }),
  );
  row('direct, 32 concurrent callers', lat, performance.now() - t0);
}
// Direct, 16 callers: the relay's own concurrency (SEND_CONCURRENCY), so the send-only ceiling of a relay pass.
{
  const lat: number[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < n) {
        const s = performance.now();
        await enqueuer.enqueue('health.check', {}, { key: key() });
        lat.push(performance.now() - s);
      }
    }),
  );
  row('direct, 16 concurrent callers (the relay without its database)', lat, performance.now() - t0);
}

async function outbox(label: string, db: Db) {
  await migrate(db);
  // The relay's statements counted and timed: what group-committing them could save at most.
  let statements = 0;
  let dbMs = 0;
  const counted = {
    query: async (...args: Parameters<Db['query']>) => {
      statements++;
      const s = performance.now();
      try {
        return await db.query(...args);
      } finally {
        dbMs += performance.now() - s;
      }
    },
  } as unknown as Db;
  const relay = new OutboxRelay({ db: counted, enqueuer, log, clock: { now: Date.now } });
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await db.transaction(async (tx) => {
      const s = performance.now();
      // A tx without afterCommit: the relay is measured on its own below.
      await enqueuer.enqueue(
        'health.check',
        {},
        { key: key(), tx: { query: tx.query.bind(tx), exec: tx.exec.bind(tx) } },
      );
      lat.push(performance.now() - s);
    });
  }
  row(`outbox insert in a transaction (${label})`, lat, performance.now() - t0);
  const r0 = performance.now();
  const result = await relay.flush();
  const relayMs = performance.now() - r0;
  rows.push(
    `| outbox relay, batches of 100 (${label}) | ${result.sent} | ${((result.sent / relayMs) * 1000).toFixed(0)} | | |`,
  );
  notes.push(
    `relay (${label}): ${statements} statements for ${result.sent} tasks (${(statements / Math.max(1, result.sent)).toFixed(3)} per task), ` +
      `${dbMs.toFixed(0)} of ${relayMs.toFixed(0)} ms waiting on the database (${((100 * dbMs) / relayMs).toFixed(1)} %)`,
  );
  await db.close();
}

await outbox('PGlite in memory', await openPglite({ dataDir: null }));
const name = `bench_enqueue_${process.pid}`;
const admin = new pg.Client({ connectionString: pgUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
try {
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  await outbox('PostgreSQL', openPostgres({ url: url.toString() }));
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
await clients.close();
await emulator.close();

console.log('| measurement | enqueues | per second | p50 ms | p99 ms |\n|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log('');
for (const line of notes) console.log(line);
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);

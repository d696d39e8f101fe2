// POST /webhooks/whatsapp under load (issue 7): Meta wants a fast 200, so this measures the
// webhook's latency on PostgreSQL through the whole service as `npm start` runs it (startService:
// the real app, the outbox relay, the embedded emulator):
//   1 connection     back to back, the queue running: a webhook's own latency, not queued behind others;
//   50, paused       50 connections back to back (closed loop), the whatsapp queue paused: ingest
//                    (shared transactions: message rows and their outbox rows) and the relay to the emulator;
//   50, processing   the same with the queue running, so every webhook also costs its
//                    process_message and send_message pushes in the same process;
//   ceiling          50 connections to a bare Fastify route in its own process doing the same
//                    signature check, JSON parse and payload schema, and no database: what the
//                    machine allows before any storage.
// Every request is a new message (unique wamid) with a valid X-Hub-Signature-256, signed before
// the run so the load generator does little per request. The ceiling's process starts first and
// its runs alternate with the queue-paused ones (ABBA), so each round compares runs made side by
// side; the script prints ingest / ceiling per round and of the medians (issue 14's goal: 80 %).
// It also reads each run's CPU from /proc: the server process and the test database's backends,
// per 200: a figure other load on the machine barely moves, unlike the rates.
//
// Run: node bench/whatsapp-webhook.bench.ts [--runs 3] [--requests 3000] [--connections 50] [--warmup 500]
// PostgreSQL from BENCH_DATABASE_URL (default the local server); the script creates, migrates and
// drops its own database. Bounded: a fixed number of requests per run, each run cut at 60 s;
// loopback only. Exits 1 when a correctness check fails (an inbound row per 200, nothing else).
// Results: bench/results/whatsapp-webhook.md.
// BENCH_CPU_PROF=<dir> starts the service with --cpu-prof into <dir> (written on exit).
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { parseWebhook, signWebhook, textWebhook, verifyWebhookSignature } from '../src/domains/whatsapp/webhook.ts';
import { createLogger } from '../src/logger.ts';
import { startService } from '../src/main.ts';

const APP_SECRET = 'bench-app-secret';

if (process.argv[2] === '--serve-ceiling') {
  const app = Fastify();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 3 * 1024 * 1024 }, (_r, body, done) =>
    done(null, body),
  );
  app.post('/webhooks/whatsapp', async (request, reply) => {
    const raw = request.body as Buffer;
    const check = verifyWebhookSignature(raw, request.headers['x-hub-signature-256'] as string | undefined, APP_SECRET);
    if (!check.ok) return reply.code(403).send({ error: check.reason });
    const parsed = parseWebhook(JSON.parse(raw.toString('utf8')));
    return { received: parsed.messages.length > 0 };
  });
  await app.listen({ host: '127.0.0.1', port: Number(process.argv[3]) });
  process.on('message', async () => {
    await app.close();
    process.exit(0);
  });
  process.send?.({ type: 'ready' });
} else if (process.argv[2] === '--serve') {
  const env = JSON.parse(process.argv[3]!) as Record<string, string>;
  const service = await startService(loadConfig(env), { logger: createLogger({ level: 'warn', format: 'json' }) });
  const queue = service.clients.tasks.queuePath(
    service.config.tasks.projectId,
    service.config.tasks.location,
    'whatsapp',
  );
  process.on('message', async (msg: { type: string }) => {
    if (msg.type === 'stop') {
      await service.close();
      process.exit(0);
    } else if (msg.type === 'pause' || msg.type === 'resume') {
      // Paused: tasks are still created (the outbox relay runs), only their dispatch waits.
      await (msg.type === 'pause'
        ? service.clients.tasks.pauseQueue({ name: queue })
        : service.clients.tasks.resumeQueue({ name: queue }));
      process.send?.({ type: msg.type });
    }
  });
  process.send?.({ type: 'ready' });
} else {
  await main();
}

interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
}
type AutocannonRequest = { headers: Record<string, string>; body?: string };
interface LoadResult {
  latencies: number[];
  ok: number;
  bad: number;
  seconds: number;
  /** CPU µs per 200 of the server process and of the database's backends (0 for the ceiling). */
  serverUs: number;
  postgresUs: number;
}

/** CPU seconds (user + system) a process has used, from /proc; 0 if it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      requests: { type: 'string', default: '3000' },
      connections: { type: 'string', default: '50' },
      warmup: { type: 'string', default: '500' },
    },
  });
  const runs = Number(values.runs);
  const amount = Number(values.requests);
  const connections = Number(values.connections);
  const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `bench_whatsapp_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-wa-'));
  const port = 20_000 + (process.pid % 20_000);
  const env = {
    DATABASE_URL: url.toString(),
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    EMULATOR_GRPC_PORT: '0',
    EMULATOR_HTTP_PORT: '0',
    WHATSAPP_APP_SECRET: APP_SECRET,
  };
  const profDir = process.env.BENCH_CPU_PROF;
  const execArgv = [...process.execArgv, ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])];
  const child = fork(import.meta.filename, ['--serve', JSON.stringify(env)], { stdio: 'inherit', execArgv });
  const [ready] = (await once(child, 'message')) as [{ type: string }];
  if (ready.type !== 'ready') throw new Error('the service did not start');
  const control = async (type: 'pause' | 'resume') => {
    child.send({ type });
    await once(child, 'message');
  };

  const autocannon = createRequire(import.meta.url)('autocannon') as (
    options: Record<string, unknown>,
    done: (err: Error | null, result: AutocannonResult) => void,
  ) => NodeJS.EventEmitter & { stop(): void };
  let seq = 0;
  /** `count` new signed messages, prepared before the run. */
  const prepare = (count: number) =>
    Array.from({ length: count }, () => {
      const n = seq++;
      const body = textWebhook([
        { from: `1555${String(n % 500).padStart(7, '0')}`, text: 'balance', wamid: `wamid.BENCH${process.pid}x${n}` },
      ]);
      return { body, signature: signWebhook(body, APP_SECRET) };
    });
  /** The database's backends (the service's pool) and the CPU each has used so far. */
  const backendsCpu = async () => {
    const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [
      dbName,
    ]);
    return new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid)]));
  };
  const load = async (count: number, conns = connections, target = port): Promise<LoadResult> => {
    const serverPid = target === port ? child.pid! : ceilingPid;
    const server0 = cpuSeconds(serverPid);
    const pg0 = await backendsCpu();
    const result = await loadOnly(count, conns, target);
    const server1 = cpuSeconds(serverPid);
    const pg1 = await backendsCpu();
    let pgSeconds = 0;
    for (const [pid, after] of pg1) pgSeconds += after - (pg0.get(pid) ?? 0);
    const per = (seconds: number) => (result.ok > 0 ? (seconds * 1e6) / result.ok : 0);
    return {
      ...result,
      serverUs: per(server1 - server0),
      postgresUs: target === port ? per(pgSeconds) : 0,
    };
  };
  let ceilingPid = 0;
  const loadOnly = (count: number, conns: number, target: number) =>
    new Promise<Omit<LoadResult, 'serverUs' | 'postgresUs'>>((resolve, reject) => {
      const bodies = prepare(count);
      let next = 0;
      const latencies: number[] = [];
      const started = performance.now();
      let last = started;
      const instance = autocannon(
        {
          url: `http://127.0.0.1:${target}/webhooks/whatsapp`,
          method: 'POST',
          connections: conns,
          amount: count,
          timeout: 10,
          sampleInt: 50,
          headers: { 'content-type': 'application/json' },
          requests: [
            {
              setupRequest: (req: AutocannonRequest) => {
                const { body, signature } = bodies[next++ % bodies.length]!;
                return { ...req, body, headers: { ...req.headers, 'x-hub-signature-256': signature } };
              },
            },
          ],
        },
        (err, result) => {
          clearTimeout(limit);
          if (err) return reject(err);
          resolve({
            latencies: latencies.sort((a, b) => a - b),
            ok: result.statusCodeStats['200']?.count ?? 0,
            bad: result.non2xx + result.errors + result.timeouts,
            seconds: (last - started) / 1000,
          });
        },
      );
      instance.on('response', (_c: unknown, _s: number, _b: number, ms: number) => {
        latencies.push(ms);
        last = performance.now();
      });
      const limit = setTimeout(() => instance.stop(), 60_000);
    });

  const rows: string[] = [];
  let ok200 = 0;
  let failed = false;
  /** One table row; `stored`: the 200s left an inbound row each (not the ceiling's). */
  const record = (label: string, r: number, result: LoadResult, stored = true) => {
    if (stored) ok200 += result.ok;
    if (result.bad > 0) failed = true;
    const at = (q: number) =>
      result.latencies[Math.min(result.latencies.length - 1, Math.floor(q * result.latencies.length))]!;
    rows.push(
      `| ${label} | ${r} | ${result.latencies.length} | ${result.bad} | ${(result.ok / result.seconds).toFixed(0)} | ${at(0.5).toFixed(1)} | ${at(0.99).toFixed(1)} | ${result.latencies.at(-1)!.toFixed(1)} | ${result.serverUs.toFixed(0)} | ${result.postgresUs.toFixed(0)} |`,
    );
  };
  /** 200/s of each run, by configuration, for the ratios. */
  const rates = new Map<string, number[]>();
  /** CPU µs per 200 (server + PostgreSQL) of each run, by configuration. */
  const cpu = new Map<string, number[]>();
  const rate = (label: string, result: LoadResult) => {
    rates.set(label, [...(rates.get(label) ?? []), result.ok / result.seconds]);
    cpu.set(label, [...(cpu.get(label) ?? []), result.serverUs + result.postgresUs]);
    return result;
  };
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  // The ceiling runs in its own process from the start, so that it and the ingest alternate
  // within each round (ABBA): on a shared machine, only runs made side by side compare.
  const ceilingPort = port + 1;
  const ceiling = fork(import.meta.filename, ['--serve-ceiling', String(ceilingPort)], { stdio: 'inherit' });
  await once(ceiling, 'message');
  ceilingPid = ceiling.pid!;
  const paused = `${connections}, queue paused`;
  const ceilingLabel = `${connections}, ceiling (no database)`;
  try {
    ok200 += (await load(Number(values.warmup))).ok;
    await load(Number(values.warmup), connections, ceilingPort);
    for (let r = 1; r <= runs; r++) record('1 connection, processing', r, await load(Math.ceil(amount / 3), 1));
    await control('pause');
    for (let r = 1; r <= runs; r++) {
      const ingestFirst = r % 2 === 1;
      if (ingestFirst) record(paused, r, rate(paused, await load(amount)));
      record(ceilingLabel, r, rate(ceilingLabel, await load(amount, connections, ceilingPort)), false);
      if (!ingestFirst) record(paused, r, rate(paused, await load(amount)));
    }
    await control('resume');
    for (let r = 1; r <= runs; r++) {
      const label = `${connections}, processing`;
      record(label, r, rate(label, await load(amount)));
    }
    const db = new pg.Client({ connectionString: url.toString() });
    await db.connect();
    const inbound = Number(
      (await db.query(`SELECT count(*)::int AS n FROM whatsapp_messages WHERE direction = 'in'`)).rows[0].n,
    );
    await db.end();
    const check = inbound === ok200 ? 'ok' : `FAILED: ${inbound} inbound rows for ${ok200} 200s`;
    if (inbound !== ok200) failed = true;
    process.stdout.write(
      [
        `POST /webhooks/whatsapp, ${connections} connections, PostgreSQL, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Node ${process.version}`,
        '',
        '| load | run | requests | non-200 | 200/s | p50 ms | p99 ms | max ms | server CPU µs/200 | postgres CPU µs/200 |',
        '|---|---|---|---|---|---|---|---|---|---|',
        ...rows,
        '',
        `check: one inbound row per 200 (${ok200}): ${check}`,
        '',
        `ingest (queue paused) / ceiling, medians: ${((100 * median(rates.get(paused)!)) / median(rates.get(ceilingLabel)!)).toFixed(1)} % ` +
          `(per round: ${rates
            .get(paused)!
            .map((x, i) => `${((100 * x) / rates.get(ceilingLabel)![i]!).toFixed(1)} %`)
            .join(
              ', ',
            )}); processing / ceiling: ${((100 * median(rates.get(`${connections}, processing`)!)) / median(rates.get(ceilingLabel)!)).toFixed(1)} %`,
        `CPU per webhook (server + PostgreSQL backends), medians: ingest ${median(cpu.get(paused)!).toFixed(0)} µs, ceiling ${median(cpu.get(ceilingLabel)!).toFixed(0)} µs: ` +
          `ceiling / ingest ${((100 * median(cpu.get(ceilingLabel)!)) / median(cpu.get(paused)!)).toFixed(1)} % (the throughput ratio where CPU is the only limit; the server's CPU includes the outbox relay and, locally, the emulator)`,
        `load average at the end: ${loadavg()
          .map((x) => x.toFixed(2))
          .join(' ')}`,
        '',
      ].join('\n'),
    );
  } finally {
    ceiling.send({ type: 'stop' });
    await once(ceiling, 'exit');
    child.send({ type: 'stop' });
    await once(child, 'exit');
    rmSync(dataDir, { recursive: true, force: true });
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
  process.exit(failed ? 1 : 0);
}

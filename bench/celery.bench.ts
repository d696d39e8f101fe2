// Celery on the same no-op workload, for comparison with the push path and the emulator: what the
// users of this project leave. A private redis-server (loopback, a free port, no persistence) is
// the broker; Debian's python3-celery runs a prefork worker on bench/celery/tasks.py, whose task
// only counts itself (one INCR) so completions can be counted without a result backend.
//
//   node bench/celery.bench.ts [--tasks 20000] [--concurrency 2] [--python /usr/bin/python3] [--max-seconds 120]
//
// Needs: apt-get install -y python3-celery python3-redis (and redis-server). Phases:
//   enqueue     N apply_async calls from one Python producer into the idle broker (no worker);
//   drain       a worker started on those N tasks: from its first completion to its last;
//   end-to-end  the worker warm, N more tasks: from the producer's first call to the last completion.
// Prints one JSON line per phase, then a Markdown table. Every process it starts (redis-server, the
// worker and its pool) is stopped on the way out, also on an error, a timeout or Ctrl+C.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: String(os.availableParallelism()) },
    python: { type: 'string', default: '/usr/bin/python3' },
    'redis-server': { type: 'string', default: '/usr/bin/redis-server' },
    'max-seconds': { type: 'string', default: '120' },
    'skip-end-to-end': { type: 'boolean', default: false },
  },
});
const TASKS = Math.max(100, Math.min(100_000, Number(values.tasks)));
const CONCURRENCY = Number(values.concurrency);
const PYTHON = values.python;
/** Each phase gives up (and reports what it reached) after this long. */
const PHASE_SECONDS = Number(values['max-seconds']);
const COUNTER = 'celery-bench:done';
const QUEUE = 'celery'; // Celery's default queue: a Redis list of that name
const CELERY_DIR = path.join(import.meta.dirname, 'celery');
const POLL_MS = 5;

interface Row {
  phase: string;
  count: number;
  seconds: number;
  perSecond: number;
  p50Ms?: number;
  p99Ms?: number;
  /** CPU time per task of the worker (main process and pool) and of redis-server, in µs. */
  workerCpuUs?: number;
  redisCpuUs?: number;
  note?: string;
}

// ---------------------------------------------------------------- processes and their cleanup

const started: { name: string; child: ChildProcess; group: boolean }[] = [];
let tmpDir: string | undefined;

function start(
  name: string,
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; group?: boolean } = {},
): ChildProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A group of its own, so the worker's pool processes are stopped with it.
    detached: options.group ?? false,
  });
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('exit', (code, signal) => {
    if (!stopping && code !== 0) process.stderr.write(`${name} exited (${code ?? signal}):\n${tail}\n`);
  });
  started.push({ name, child, group: options.group ?? false });
  return child;
}

function signal(entry: (typeof started)[number], sig: NodeJS.Signals): void {
  if (entry.child.exitCode !== null || entry.child.signalCode !== null || entry.child.pid === undefined) return;
  try {
    if (entry.group) process.kill(-entry.child.pid, sig);
    else entry.child.kill(sig);
  } catch {
    // already gone
  }
}

let stopping = false;
async function stopAll(): Promise<void> {
  stopping = true;
  // The worker first (a warm shutdown), then the broker; SIGKILL whatever is left after 10 s.
  for (const entry of [...started].reverse()) {
    if (entry.child.exitCode !== null || entry.child.signalCode !== null) continue;
    const exited = once(entry.child, 'exit');
    signal(entry, 'SIGTERM');
    const timer = setTimeout(() => signal(entry, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    if (entry.group) signal(entry, 'SIGKILL'); // any pool process that outlived its parent
  }
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
}

process.on('exit', () => {
  for (const entry of started) signal(entry, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`received ${sig}, stopping redis-server and the worker\n`);
    stopAll().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- a minimal Redis client (RESP)

class Redis {
  #socket: net.Socket;
  #buffer = '';
  #waiting: { resolve: (v: string | number | null) => void; reject: (e: Error) => void }[] = [];

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      this.#drain();
    });
  }

  static async connect(port: number): Promise<Redis> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new Redis(socket);
  }

  /** One command; integer, simple and bulk-string replies only (all this benchmark uses). */
  command(...args: string[]): Promise<string | number | null> {
    const wire = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#socket.write(wire);
    });
  }

  #drain(): void {
    for (;;) {
      const end = this.#buffer.indexOf('\r\n');
      if (end < 0 || this.#waiting.length === 0) return;
      const type = this.#buffer[0];
      const line = this.#buffer.slice(1, end);
      let value: string | number | null;
      let used = end + 2;
      if (type === '$') {
        const length = Number(line);
        if (length < 0) value = null;
        else {
          if (this.#buffer.length < used + length + 2) return;
          value = this.#buffer.slice(used, used + length);
          used += length + 2;
        }
      } else if (type === ':') value = Number(line);
      else if (type === '+') value = line;
      else {
        this.#buffer = this.#buffer.slice(used);
        this.#waiting.shift()!.reject(new Error(`redis: ${line}`));
        continue;
      }
      this.#buffer = this.#buffer.slice(used);
      this.#waiting.shift()!.resolve(value);
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

// ---------------------------------------------------------------- helpers

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** utime + stime of a process and all its descendants, in µs (Linux /proc). */
function cpuUs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const ticks = 100; // USER_HZ on Linux
  let total = 0;
  const visit = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += ((Number(fields[11]) + Number(fields[12])) / ticks) * 1e6;
      for (const child of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
        visit(Number(child));
      }
    } catch {
      // gone meanwhile
    }
  };
  visit(pid);
  return total;
}

function python(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const child = start(script, PYTHON, [script, ...args], { cwd: CELERY_DIR, env });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${script} exited ${code}`))));
  });
}

/** Waits until the counter reaches `target`; the first and last moments it moved, and its value then. */
async function watchCounter(
  redis: Redis,
  target: () => number,
  limitMs: number,
): Promise<{ firstAt: number; firstValue: number; lastAt: number; value: number; timedOut: boolean }> {
  const deadline = performance.now() + limitMs;
  let firstAt = 0;
  let firstValue = 0;
  let value = 0;
  let lastAt = 0;
  while (value < target()) {
    if (performance.now() > deadline) return { firstAt, firstValue, lastAt, value, timedOut: true };
    const now = Number((await redis.command('GET', COUNTER)) ?? 0);
    const at = performance.now();
    if (now > 0 && firstAt === 0) {
      firstAt = at;
      firstValue = now;
    }
    if (now !== value) lastAt = at;
    value = now;
    if (value < target()) await sleep(POLL_MS);
  }
  return { firstAt, firstValue, lastAt, value, timedOut: false };
}

function report(row: Row): Row {
  process.stdout.write(`${JSON.stringify(row)}\n`);
  return row;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------- the run

async function main(): Promise<void> {
  const versions = JSON.parse(await python('versions.py', [], {})) as Record<string, string>;
  const redisVersion = spawnSync(values['redis-server'], ['--version'], { encoding: 'utf8' }).stdout.match(
    /v=(\S+)/,
  )?.[1];
  const loadBefore = os.loadavg();
  process.stdout.write(
    `${JSON.stringify({
      date: new Date().toISOString(),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      loadAverage: loadBefore.map((l) => round(l, 2)),
      ...versions,
      redis: redisVersion,
      tasks: TASKS,
      concurrency: CONCURRENCY,
    })}\n`,
  );

  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'celery-bench-'));
  const port = await freePort();
  const redisServer = start('redis-server', values['redis-server'], [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    tmpDir,
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
  ]);
  let redis: Redis | undefined;
  for (let i = 0; i < 200 && !redis; i++) {
    try {
      const client = await Redis.connect(port);
      if ((await client.command('PING')) === 'PONG') redis = client;
    } catch {
      await sleep(25);
    }
  }
  if (!redis) throw new Error(`redis-server did not answer on port ${port}`);
  const env = {
    CELERY_BENCH_REDIS_URL: `redis://127.0.0.1:${port}/0`,
    CELERY_BENCH_COUNTER: COUNTER,
    PYTHONDONTWRITEBYTECODE: '1',
  };
  const rows: Row[] = [];

  // 1. enqueue: no worker, so only apply_async and the broker are measured.
  await redis.command('DEL', COUNTER);
  const redisCpu0 = cpuUs(redisServer.pid);
  const produced = JSON.parse(await python('produce.py', [String(TASKS), String(PHASE_SECONDS)], env)) as Row;
  const enqueueRedisCpu = cpuUs(redisServer.pid) - redisCpu0;
  const queued = Number(await redis.command('LLEN', QUEUE));
  rows.push(
    report({
      phase: 'enqueue (apply_async, 1 producer, no worker)',
      count: produced.count,
      seconds: produced.seconds,
      perSecond: produced.perSecond,
      p50Ms: produced.p50Ms,
      p99Ms: produced.p99Ms,
      redisCpuUs: round(enqueueRedisCpu / produced.count),
      note: `${queued} messages in the queue afterwards`,
    }),
  );

  // 2. drain: a worker on the queued tasks, timed from its first completion to its last.
  const spawnedAt = performance.now();
  const worker = start(
    'celery worker',
    PYTHON,
    [
      '-m',
      'celery',
      '-A',
      'tasks',
      'worker',
      '--pool',
      'prefork',
      '--concurrency',
      String(CONCURRENCY),
      '--loglevel',
      'WARNING',
      '--without-gossip',
      '--without-mingle',
      '-n',
      `bench${process.pid}@%h`,
    ],
    { cwd: CELERY_DIR, env, group: true },
  );
  let workerCpu0 = 0;
  let redisCpu1 = 0;
  // CPU is sampled at the first completion, so the worker's start-up is not counted.
  const firstDone = (async () => {
    while (
      Number((await redis.command('GET', COUNTER)) ?? 0) === 0 &&
      performance.now() - spawnedAt < PHASE_SECONDS * 1000
    ) {
      await sleep(POLL_MS);
    }
    workerCpu0 = cpuUs(worker.pid);
    redisCpu1 = cpuUs(redisServer.pid);
  })();
  const drained = await watchCounter(redis, () => queued, PHASE_SECONDS * 1000);
  await firstDone;
  const drainCount = drained.value - drained.firstValue;
  const drainSeconds = (drained.lastAt - drained.firstAt) / 1000;
  rows.push(
    report({
      phase: `drain (prefork ${CONCURRENCY}, ${queued} queued)`,
      count: drainCount,
      seconds: round(drainSeconds, 3),
      perSecond: round(drainCount / drainSeconds),
      workerCpuUs: round((cpuUs(worker.pid) - workerCpu0) / drainCount),
      redisCpuUs: round((cpuUs(redisServer.pid) - redisCpu1) / drainCount),
      note: `${drained.timedOut ? `TIMED OUT at ${drained.value}; ` : ''}worker start to first completion ${round((drained.firstAt - spawnedAt) / 1000, 2)} s`,
    }),
  );

  // 3. end-to-end: the warm worker, N new tasks, from the first apply_async to the last completion.
  if (!values['skip-end-to-end'] && !drained.timedOut) {
    await redis.command('DEL', COUNTER);
    const workerCpu = cpuUs(worker.pid);
    const redisCpu = cpuUs(redisServer.pid);
    const wallStart = Date.now();
    const perfStart = performance.now();
    let target = TASKS;
    const producing = python('produce.py', [String(TASKS), String(PHASE_SECONDS)], env).then((out) => {
      const result = JSON.parse(out) as Row & { firstAt: number };
      target = result.count; // it may have stopped early, on its time limit
      return result;
    });
    const done = await watchCounter(redis, () => target, PHASE_SECONDS * 2000);
    const e2eProduced = await producing;
    // From the producer's first call (its clock, epoch seconds) to the last completion seen here.
    const seconds = (done.lastAt - perfStart) / 1000 - (e2eProduced.firstAt - wallStart / 1000);
    rows.push(
      report({
        phase: `end-to-end (1 producer + prefork ${CONCURRENCY})`,
        count: done.value,
        seconds: round(seconds, 3),
        perSecond: round(done.value / seconds),
        workerCpuUs: round((cpuUs(worker.pid) - workerCpu) / done.value),
        redisCpuUs: round((cpuUs(redisServer.pid) - redisCpu) / done.value),
        note: `${done.timedOut ? 'TIMED OUT; ' : ''}producer alone ${e2eProduced.perSecond}/s meanwhile`,
      }),
    );
  }
  redis.close();

  const loadAfter = os.loadavg();
  process.stdout.write(
    `\nCelery ${versions.celery} (kombu ${versions.kombu}, billiard ${versions.billiard}), redis ${redisVersion}, ` +
      `Python ${versions.python}; ${os.cpus().length} CPUs; load average ${loadBefore[0]!.toFixed(2)} before, ${loadAfter[0]!.toFixed(2)} after` +
      `${Math.max(loadBefore[0]!, loadAfter[0]!) > 1 ? ' (CONTENDED: other work was running)' : ''}\n\n`,
  );
  process.stdout.write(
    '| phase | tasks | seconds | tasks/s | p50 / p99 ms | worker CPU µs/task | redis CPU µs/task | note |\n',
  );
  process.stdout.write('|---|---|---|---|---|---|---|---|\n');
  for (const r of rows) {
    process.stdout.write(
      `| ${r.phase} | ${r.count.toLocaleString('en')} | ${r.seconds} | ${Math.round(r.perSecond).toLocaleString('en')} | ` +
        `${r.p50Ms !== undefined ? `${r.p50Ms} / ${r.p99Ms}` : ''} | ${r.workerCpuUs ?? ''} | ${r.redisCpuUs ?? ''} | ${r.note ?? ''} |\n`,
    );
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`celery bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
}

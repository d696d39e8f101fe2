// Emulator throughput: CreateTask calls per second through the official client over gRPC and over
// REST (several concurrent callers), and end-to-end no-op tasks per second (create → dispatch →
// 200 from a bare node:http server). Loopback only; bounded in count and time.
//
//   node bench/emulator.bench.ts [--tasks 5000] [--callers 32] [--queues 8] [--where both|in-process|child] [--data-dir]
//   node bench/emulator.bench.ts --with-celery [--rounds 5] [--celery-tasks 10000] [--cpu-prof DIR] [--baseline CHECKOUT]
//   node bench/emulator.bench.ts --memory 100000 [--memory-via rest|grpc]
//
// in-process: the emulator shares the process (and the core) with the client and the target, as
// when embedded in `npm start`. child: `backend emulator` runs in its own process, as for services
// in other languages. --data-dir adds a run with a journal (fsync before each acknowledgement).
//
// --with-celery: rounds that alternate (order swapped every round) bench/celery.bench.ts's enqueue
// and drain phases with the child emulator's createTask over gRPC and end to end, plus the gRPC
// client's ceiling (the official client against a stand-in server that answers a canned Task,
// in its own process); CPU per task on each side from /proc and process.cpuUsage(); prints each
// round, the medians and the ratios to Celery measured in the same round. --cpu-prof DIR runs
// the child emulator under `node --cpu-prof` (profiles written into DIR when it exits).
// --baseline CHECKOUT also runs, in each round, the emulator of another checkout of this repository
// (its bin/backend.js, with its node_modules) through the same phases: before/after in one window.
// --memory N: RSS and V8 heap (after a full GC) of the child emulator with N tasks queued in a
// paused queue, without and with a data directory (then also the journal's size on disk).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Emulator, startEmulator } from '@backend/cloud-tasks-emulator';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';
import { celeryRound } from './celery-round.ts';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '5000' },
    callers: { type: 'string', default: '32' },
    queues: { type: 'string', default: '16' },
    'warmup-seconds': { type: 'string', default: '3' },
    where: { type: 'string', default: 'both' },
    'data-dir': { type: 'boolean', default: false },
    'with-celery': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
    'celery-tasks': { type: 'string', default: '10000' },
    'cpu-prof': { type: 'string' },
    memory: { type: 'string' },
    baseline: { type: 'string' },
    'memory-via': { type: 'string', default: 'rest' },
  },
});
const TASKS = Math.min(50_000, Number(values.tasks));
const CALLERS = Number(values.callers);
// Cloud Tasks caps a queue at 500 dispatches/s, so end-to-end load is spread over several queues:
// with 8 (the default until 2026-12-02) the queues' own limit, 4,000/s, was what end to end measured.
const QUEUES = Number(values.queues);
/**
 * Each phase first runs its calls for this long, unmeasured: the official client's CPU per call
 * falls about threefold over its first few thousand calls as V8 optimises it (413 → 143 µs in
 * three rounds of one process on 2026-12-02), and a steady state is what a long-lived caller sees.
 */
const WARMUP_MS = Number(values['warmup-seconds']) * 1000;
const PHASE_TIMEOUT_MS = 60_000;
const PARENT = 'projects/bench/locations/local';

interface Endpoints {
  grpcPort: number;
  httpPort: number;
  close(): Promise<void>;
  /** The emulator's own process, when it runs as a child: CPU time used so far, in µs. */
  cpuUs?: () => number;
  /** The child's memory after a full GC (needs the probe, see child()). */
  memory?: () => Promise<NodeJS.MemoryUsage>;
}

interface Row {
  where: string;
  measure: string;
  count: number;
  seconds: number;
  perSecond: number;
  p50?: number;
  p99?: number;
  /** CPU per task of the emulator's process (child only) and of this process (client, target), µs. */
  serverCpuUs?: number;
  clientCpuUs?: number;
}

/** utime + stime of one process so far, in µs (Linux /proc; 10 ms resolution). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6;
}

function ownCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Runs `work` and adds the CPU per `count()` task it cost on each side. */
async function withCpu<R extends Row>(endpoints: Endpoints, work: () => Promise<R>): Promise<R> {
  const server0 = endpoints.cpuUs?.();
  const client0 = ownCpuUs();
  const row = await work();
  const count = Math.max(1, row.count);
  row.clientCpuUs = (ownCpuUs() - client0) / count;
  if (server0 !== undefined) row.serverCpuUs = (endpoints.cpuUs!() - server0) / count;
  return row;
}

function client(endpoints: Endpoints, transport: 'grpc' | 'rest'): CloudTasksClient {
  return transport === 'grpc'
    ? new CloudTasksClient({
        apiEndpoint: '127.0.0.1',
        port: endpoints.grpcPort,
        sslCreds: gax.grpc.credentials.createInsecure(),
        authClient: new PassThroughClient(),
        projectId: 'bench',
      })
    : new CloudTasksClient({
        fallback: 'rest',
        protocol: 'http',
        apiEndpoint: '127.0.0.1',
        port: endpoints.httpPort,
        authClient: new PassThroughClient(),
        projectId: 'bench',
      });
}

async function inProcess(dataDir?: string): Promise<Endpoints> {
  const emulator: Emulator = await startEmulator({ grpcPort: 0, httpPort: 0, ...(dataDir ? { dataDir } : {}) });
  return { grpcPort: emulator.grpcPort, httpPort: emulator.httpPort, close: () => emulator.close() };
}

// Loaded into the child with --import: on SIGUSR2 it prints its memory after a full GC.
const MEMORY_PROBE =
  "process.on('SIGUSR2',()=>{globalThis.gc?.();globalThis.gc?.();" +
  "process.stdout.write('MEMORY '+JSON.stringify(process.memoryUsage())+'\\n')})";

async function child(dataDir?: string, nodeArgs: string[] = [], root?: string): Promise<Endpoints> {
  const bin = root ? path.join(root, 'bin', 'backend.js') : new URL('../bin/backend.js', import.meta.url).pathname;
  const args = ['emulator', '--grpc-port', '0', '--http-port', '0', ...(dataDir ? ['--data-dir', dataDir] : [])];
  const probe = ['--expose-gc', `--import=data:text/javascript,${encodeURIComponent(MEMORY_PROBE)}`];
  const proc: ChildProcess = spawn(process.execPath, [...probe, ...nodeArgs, bin, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const ports = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const grpc = /gRPC\s+127\.0\.0\.1:(\d+)/.exec(out);
      const rest = /REST\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (grpc && rest) resolve({ grpcPort: Number(grpc[1]), httpPort: Number(rest[1]) });
    });
    proc.once('exit', (code) => reject(new Error(`backend emulator exited (${code})`)));
  });
  return {
    ...ports,
    cpuUs: () => procCpuUs(proc.pid!),
    memory: async () => {
      const from = out.length;
      proc.kill('SIGUSR2');
      for (;;) {
        const match = /MEMORY (\{.*\})\n/.exec(out.slice(from));
        if (match) return JSON.parse(match[1]!) as NodeJS.MemoryUsage;
        await once(proc.stdout!, 'data');
      }
    },
    close: async () => {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** Runs `total` calls from `callers` concurrent loops; returns the elapsed time and per-call latencies. */
async function drive(
  total: number,
  callers: number,
  call: (i: number) => Promise<unknown>,
  timeoutMs = PHASE_TIMEOUT_MS,
) {
  const latencies: number[] = [];
  let next = 0;
  const deadline = Date.now() + timeoutMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < total && Date.now() < deadline) {
        const i = next++;
        const t0 = performance.now();
        await call(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { count: latencies.length, seconds, p50: at(0.5), p99: at(0.99) };
}

async function startTarget(): Promise<{ url: string; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received += 1;
      res.end();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tasks/noop`,
    received: () => received,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function createRate(where: string, endpoints: Endpoints, transport: 'grpc' | 'rest'): Promise<Row> {
  const tasks = client(endpoints, transport);
  const queue = `${PARENT}/queues/create-${transport}`;
  await tasks.createQueue({ parent: PARENT, queue: { name: queue } });
  await tasks.pauseQueue({ name: queue }); // measure the API alone: nothing is dispatched
  const body = Buffer.from(JSON.stringify({ kind: 'noop', n: 0 }));
  const request = (i: number) =>
    tasks.createTask({
      parent: queue,
      task: {
        httpRequest: { url: `http://127.0.0.1:9/noop/${i}`, headers: { 'Content-Type': 'application/json' }, body },
      },
    });
  await drive(Number.POSITIVE_INFINITY, CALLERS, request, WARMUP_MS); // warm-up: connections, JIT
  const row = await withCpu(endpoints, async () => {
    const result = await drive(TASKS, CALLERS, request);
    return { where, measure: `createTask, ${transport}`, ...result, perSecond: result.count / result.seconds };
  });
  await tasks.close();
  return row;
}

/**
 * The REST server alone: the same CreateTask JSON the client sends, from a plain keep-alive
 * node:http client, so the figure is not bounded by the official client's own cost.
 */
async function rawRestRate(where: string, endpoints: Endpoints): Promise<Row> {
  const queue = `${PARENT}/queues/create-raw`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CALLERS });
  const post = (path: string, body: string) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: endpoints.httpPort,
          path,
          method: 'POST',
          agent,
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(200) : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  await post(`/v2/${PARENT}/queues`, JSON.stringify({ name: queue }));
  await post(`/v2/${queue}:pause`, '{}');
  const body = JSON.stringify({
    task: {
      httpRequest: {
        headers: { 'Content-Type': 'application/json' },
        url: 'http://127.0.0.1:9/noop',
        httpMethod: 1,
        body: Buffer.from(JSON.stringify({ kind: 'noop', n: 0 })).toString('base64'),
      },
    },
  });
  const path = `/v2/${queue}/tasks?$alt=json%3Benum-encoding=int`;
  await drive(Number.POSITIVE_INFINITY, CALLERS, () => post(path, body), WARMUP_MS);
  const result = await drive(TASKS, CALLERS, () => post(path, body));
  agent.destroy();
  return {
    where,
    measure: 'createTask, REST from plain node:http (server capacity)',
    ...result,
    perSecond: result.count / result.seconds,
  };
}

/** The official client in REST mode against a server that answers a canned Task: the client's own ceiling. */
async function restClientCeiling(): Promise<Row> {
  const canned = JSON.stringify({ name: `${PARENT}/queues/q/tasks/1`, view: 'BASIC', dispatchCount: 0 });
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(canned));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const tasks = client({ grpcPort: 0, httpPort: port, close: async () => {} }, 'rest');
  const body = Buffer.from(JSON.stringify({ kind: 'noop', n: 0 }));
  const request = () =>
    tasks.createTask({ parent: `${PARENT}/queues/q`, task: { httpRequest: { url: 'http://127.0.0.1:9/noop', body } } });
  await drive(Number.POSITIVE_INFINITY, CALLERS, request, WARMUP_MS);
  const result = await drive(TASKS, CALLERS, request);
  await tasks.close();
  server.closeAllConnections();
  server.close();
  return {
    where: 'no emulator',
    measure: 'createTask, REST client vs a canned answer (client ceiling)',
    ...result,
    perSecond: result.count / result.seconds,
  };
}

/** Waits (up to the phase's time limit) until `expected` more requests than `base` reached the target. */
async function untilDelivered(
  target: { received: () => number },
  base: number,
  expected: number,
  started: number,
  where: string,
  measure: string,
): Promise<Row> {
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  while (target.received() - base < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  const seconds = (performance.now() - started) / 1000;
  const count = target.received() - base;
  return { where, measure, count, seconds, perSecond: count / seconds };
}

async function endToEnd(where: string, endpoints: Endpoints): Promise<Row> {
  const target = await startTarget();
  const tasks = client(endpoints, 'grpc');
  const queues = Array.from({ length: QUEUES }, (_, i) => `${PARENT}/queues/e2e-${i}`);
  for (const name of queues) await tasks.createQueue({ parent: PARENT, queue: { name } });
  const create = (i: number) =>
    tasks.createTask({ parent: queues[i % QUEUES], task: { httpRequest: { url: target.url } } });
  const warm = await drive(Number.POSITIVE_INFINITY, CALLERS, create, WARMUP_MS);
  while (target.received() < warm.count) await new Promise((r) => setTimeout(r, 5));
  const base = target.received();
  const row = await withCpu(endpoints, async () => {
    const started = performance.now();
    const created = await drive(TASKS, CALLERS, create);
    return untilDelivered(target, base, created.count, started, where, `end-to-end (create → 200), ${QUEUES} queues`);
  });
  await tasks.close();
  await target.close();
  return row;
}

/**
 * The emulator's side of Celery's drain: TASKS tasks created into paused queues first, then every
 * queue resumed; from the resume to the last 200 at the target (Celery's drain counts from its
 * worker's first completion, so this is the stricter clock). Dispatch alone: no creates compete.
 */
async function drain(where: string, endpoints: Endpoints): Promise<Row> {
  const target = await startTarget();
  const tasks = client(endpoints, 'grpc');
  const queues = Array.from({ length: QUEUES }, (_, i) => `${PARENT}/queues/drain-${i}`);
  for (const name of queues) {
    await tasks.createQueue({ parent: PARENT, queue: { name } });
    await tasks.pauseQueue({ name });
  }
  const create = (i: number) =>
    tasks.createTask({ parent: queues[i % QUEUES], task: { httpRequest: { url: target.url } } });
  // Warm the dispatch path (agent sockets, JIT) on one queue's worth, delivered before the clock starts.
  const warm = await drive(Math.min(TASKS, 2_000), CALLERS, create);
  await Promise.all(queues.map((name) => tasks.resumeQueue({ name })));
  while (target.received() < warm.count) await new Promise((r) => setTimeout(r, 5));
  await Promise.all(queues.map((name) => tasks.pauseQueue({ name })));
  const created = await drive(TASKS, CALLERS, create);
  const base = target.received();
  const row = await withCpu(endpoints, async () => {
    const started = performance.now();
    await Promise.all(queues.map((name) => tasks.resumeQueue({ name })));
    return untilDelivered(target, base, created.count, started, where, `drain (resume → last 200), ${QUEUES} queues`);
  });
  await tasks.close();
  await target.close();
  return row;
}

async function run(where: 'in-process' | 'child', dataDir?: string): Promise<Row[]> {
  const label = dataDir ? `${where}, data dir` : where;
  const endpoints = where === 'child' ? await child(dataDir) : await inProcess(dataDir);
  try {
    return [
      await createRate(label, endpoints, 'grpc'),
      await createRate(label, endpoints, 'rest'),
      await rawRestRate(label, endpoints),
      await endToEnd(label, endpoints),
      await drain(label, endpoints),
    ];
  } finally {
    await endpoints.close();
  }
}

// ---------------------------------------------------------------- the gRPC client's ceiling

/**
 * A stand-in gRPC server in its own process: the emulator's gRPC transport (grpc-js, protobufjs
 * decode and encode) with handlers that answer a canned Task the size of the emulator's. The
 * official client's rate and CPU against it are what the client alone can do here.
 */
const CANNED_SERVER = `
import { loadServices, startGrpcServer } from '@backend/cloud-tasks-emulator/grpc';
const now = { seconds: Math.floor(Date.now() / 1000), nanos: 0 };
const task = {
  name: '${PARENT}/queues/canned/tasks/1234567890123456789',
  httpRequest: { url: 'http://127.0.0.1:9/noop/1', httpMethod: 'POST', headers: { 'Content-Type': 'application/json', 'User-Agent': 'Google-Cloud-Tasks' } },
  scheduleTime: now, createTime: now, dispatchDeadline: { seconds: 600, nanos: 0 }, dispatchCount: 0, responseCount: 0, view: 'BASIC',
};
const { tasks } = loadServices();
let port;
if (process.argv[1] === 'bare') {
  // The same answer from a bare node:http2 server (no grpc-js): what the gRPC transport costs.
  const http2 = await import('node:http2');
  const create = tasks.methods.find((m) => m.name === 'CreateTask');
  const bytes = create.responseType.encode(create.responseType.fromObject(task)).finish();
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  const server = http2.createServer();
  server.on('stream', (stream) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      create.requestType.toObject(create.requestType.decode(body.subarray(5)), { longs: Number, enums: String });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      stream.end(frame);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = server.address().port;
} else {
  const server = await startGrpcServer('127.0.0.1', 0, [{ spec: tasks, handlers: { CreateTask: () => task } }], () => {});
  port = server.port;
}
process.stdout.write('PORT ' + port + '\\n');
`;

async function grpcClientCeiling(bare = false): Promise<Row> {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', CANNED_SERVER, bare ? 'bare' : 'grpc-js'], {
    cwd: new URL('..', import.meta.url).pathname,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`canned gRPC server exited (${code})`)));
  });
  const endpoints: Endpoints = {
    grpcPort: port,
    httpPort: 0,
    close: async () => {},
    cpuUs: () => procCpuUs(proc.pid!),
  };
  const tasks = client(endpoints, 'grpc');
  const body = Buffer.from(JSON.stringify({ kind: 'noop', n: 0 }));
  const request = (i: number) =>
    tasks.createTask({
      parent: `${PARENT}/queues/canned`,
      task: {
        httpRequest: { url: `http://127.0.0.1:9/noop/${i}`, headers: { 'Content-Type': 'application/json' }, body },
      },
    });
  try {
    await drive(Number.POSITIVE_INFINITY, CALLERS, request, WARMUP_MS);
    return await withCpu(endpoints, async () => {
      const result = await drive(TASKS, CALLERS, request);
      return {
        where: 'no emulator',
        measure: `createTask, gRPC client vs a canned answer from ${bare ? 'bare node:http2' : 'grpc-js'} (client ceiling)`,
        ...result,
        perSecond: result.count / result.seconds,
      };
    });
  } finally {
    await tasks.close();
    proc.kill('SIGTERM');
    await once(proc, 'exit');
  }
}

interface Round {
  round: number;
  order: string;
  load: number;
  enqueue: number;
  drain: number;
  celeryDrainCpuUs: number;
  create: Row;
  e2e: Row;
  /** The emulator's drain (dispatch of queued tasks alone). */
  dispatch: Row;
  ceiling: Row;
  baseline?: { create: Row; e2e: Row; dispatch: Row };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function withCelery(): Promise<void> {
  const rounds: Round[] = [];
  const count = Number(values.rounds);
  const celeryTasks = Number(values['celery-tasks']);
  for (let r = 0; r < count; r++) {
    const load = os.loadavg()[0]!;
    let celery: Awaited<ReturnType<typeof celeryRound>> | undefined;
    let emulator: { create: Row; e2e: Row; dispatch: Row; ceiling: Row } | undefined;
    const runEmulator = async () => {
      const profDir = values['cpu-prof'];
      const endpoints = await child(undefined, profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []);
      try {
        const create = await createRate('child', endpoints, 'grpc');
        const e2e = await endToEnd('child', endpoints);
        emulator = { create, e2e, dispatch: await drain('child', endpoints), ceiling: await grpcClientCeiling() };
      } finally {
        await endpoints.close();
      }
    };
    const runCelery = async () => {
      celery = await celeryRound(celeryTasks);
    };
    let baseline: { create: Row; e2e: Row; dispatch: Row } | undefined;
    const runBaseline = async () => {
      const endpoints = await child(undefined, [], values.baseline);
      try {
        baseline = {
          create: await createRate('child', endpoints, 'grpc'),
          e2e: await endToEnd('child', endpoints),
          dispatch: await drain('child', endpoints),
        };
      } finally {
        await endpoints.close();
      }
    };
    const steps = values.baseline ? [runCelery, runEmulator, runBaseline] : [runCelery, runEmulator];
    // Rotated every round, so that no side always runs first or last.
    const order = steps.map((_, i) => steps[(i + r) % steps.length]!);
    for (const step of order) await step();
    const round: Round = {
      round: r + 1,
      order: order.map((f) => (f === runCelery ? 'Celery' : f === runEmulator ? 'emulator' : 'baseline')).join(', '),
      load,
      enqueue: celery!.enqueue.perSecond,
      drain: celery!.drain.perSecond,
      celeryDrainCpuUs: (celery!.drain.workerCpuUs ?? 0) + (celery!.drain.redisCpuUs ?? 0),
      ...emulator!,
      ...(baseline ? { baseline } : {}),
    };
    rounds.push(round);
    process.stderr.write(
      `round ${round.round} (load ${load.toFixed(1)}): Celery enqueue ${Math.round(round.enqueue)}/s drain ${Math.round(round.drain)}/s; ` +
        `emulator createTask gRPC ${Math.round(round.create.perSecond)}/s, end to end ${Math.round(round.e2e.perSecond)}/s, drain ${Math.round(round.dispatch.perSecond)}/s, ` +
        `gRPC client ceiling ${Math.round(round.ceiling.perSecond)}/s\n`,
    );
  }

  const cpu = os.cpus();
  const us = (v?: number) => (v === undefined ? '' : Math.round(v).toLocaleString('en'));
  const n = (v: number) => Math.round(v).toLocaleString('en');
  console.log(
    `\n${new Date().toISOString()} · Node ${process.version} · ${cpu.length} × ${cpu[0]?.model ?? 'cpu'} · ` +
      `emulator ${TASKS} tasks, ${CALLERS} callers, ${QUEUES} queues (child process) · Celery ${celeryTasks} tasks · ` +
      `load average ${os.loadavg()[0]!.toFixed(1)} at the end\n`,
  );
  console.log(
    '| round | order | load | Celery enqueue/s | Celery drain/s | createTask gRPC/s | end to end/s | emulator drain/s | gRPC client ceiling/s | create ÷ enqueue | e2e ÷ drain | drain ÷ drain | CPU µs/create: emulator + client | CPU µs/task e2e: emulator + bench | CPU µs/task drain: emulator + target | ceiling CPU µs/call: client + canned server | Celery drain CPU µs/task (worker + redis) |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rounds) {
    console.log(
      `| ${r.round} | ${r.order} | ${r.load.toFixed(1)} | ${n(r.enqueue)} | ${n(r.drain)} | ${n(r.create.perSecond)} | ${n(r.e2e.perSecond)} | ${n(r.dispatch.perSecond)} | ${n(r.ceiling.perSecond)} | ` +
        `${(r.create.perSecond / r.enqueue).toFixed(2)}× | ${(r.e2e.perSecond / r.drain).toFixed(2)}× | ${(r.dispatch.perSecond / r.drain).toFixed(2)}× | ` +
        `${us(r.create.serverCpuUs)} + ${us(r.create.clientCpuUs)} | ${us(r.e2e.serverCpuUs)} + ${us(r.e2e.clientCpuUs)} | ${us(r.dispatch.serverCpuUs)} + ${us(r.dispatch.clientCpuUs)} | ` +
        `${us(r.ceiling.clientCpuUs)} + ${us(r.ceiling.serverCpuUs)} | ${us(r.celeryDrainCpuUs)} |`,
    );
  }
  const med = (f: (r: Round) => number | undefined) => median(rounds.map((r) => f(r) ?? 0));
  console.log(
    `| **median** | | ${med((r) => r.load).toFixed(1)} | ${n(med((r) => r.enqueue))} | ${n(med((r) => r.drain))} | ${n(med((r) => r.create.perSecond))} | ` +
      `${n(med((r) => r.e2e.perSecond))} | ${n(med((r) => r.dispatch.perSecond))} | ${n(med((r) => r.ceiling.perSecond))} | ` +
      `**${med((r) => r.create.perSecond / r.enqueue).toFixed(2)}×** | **${med((r) => r.e2e.perSecond / r.drain).toFixed(2)}×** | **${med((r) => r.dispatch.perSecond / r.drain).toFixed(2)}×** | ` +
      `${us(med((r) => r.create.serverCpuUs))} + ${us(med((r) => r.create.clientCpuUs))} | ${us(med((r) => r.e2e.serverCpuUs))} + ${us(med((r) => r.e2e.clientCpuUs))} | ` +
      `${us(med((r) => r.dispatch.serverCpuUs))} + ${us(med((r) => r.dispatch.clientCpuUs))} | ` +
      `${us(med((r) => r.ceiling.clientCpuUs))} + ${us(med((r) => r.ceiling.serverCpuUs))} | ${us(med((r) => r.celeryDrainCpuUs))} |`,
  );
  if (rounds[0]?.baseline) {
    console.log(`\nBaseline (${values.baseline}) in the same rounds:\n`);
    console.log(
      '| round | createTask gRPC/s: baseline → this | end to end/s: baseline → this | drain/s: baseline → this | CPU µs/create, emulator: baseline → this | CPU µs/task e2e, emulator: baseline → this | CPU µs/task drain, emulator: baseline → this |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rounds) {
      const b = r.baseline!;
      console.log(
        `| ${r.round} | ${n(b.create.perSecond)} → ${n(r.create.perSecond)} | ${n(b.e2e.perSecond)} → ${n(r.e2e.perSecond)} | ` +
          `${n(b.dispatch.perSecond)} → ${n(r.dispatch.perSecond)} | ` +
          `${us(b.create.serverCpuUs)} → ${us(r.create.serverCpuUs)} | ${us(b.e2e.serverCpuUs)} → ${us(r.e2e.serverCpuUs)} | ` +
          `${us(b.dispatch.serverCpuUs)} → ${us(r.dispatch.serverCpuUs)} |`,
      );
    }
    console.log(
      `| **median** | ${n(med((r) => r.baseline!.create.perSecond))} → ${n(med((r) => r.create.perSecond))} | ` +
        `${n(med((r) => r.baseline!.e2e.perSecond))} → ${n(med((r) => r.e2e.perSecond))} | ` +
        `${n(med((r) => r.baseline!.dispatch.perSecond))} → ${n(med((r) => r.dispatch.perSecond))} | ` +
        `${us(med((r) => r.baseline!.create.serverCpuUs))} → ${us(med((r) => r.create.serverCpuUs))} | ` +
        `${us(med((r) => r.baseline!.e2e.serverCpuUs))} → ${us(med((r) => r.e2e.serverCpuUs))} | ` +
        `${us(med((r) => r.baseline!.dispatch.serverCpuUs))} → ${us(med((r) => r.dispatch.serverCpuUs))} |`,
    );
  }
  console.log(
    `\nGoals (issue 17): createTask over gRPC ≥ 2× Celery's enqueue: median ratio ${med((r) => r.create.perSecond / r.enqueue).toFixed(2)}×; ` +
      `end to end ≥ 4× Celery's drain: median ratio ${med((r) => r.e2e.perSecond / r.drain).toFixed(2)}× ` +
      `(the emulator's own drain, dispatch alone: ${med((r) => r.dispatch.perSecond / r.drain).toFixed(2)}×).`,
  );
}

// ---------------------------------------------------------------- memory per queued task

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(full) : statSync(full).size;
  }
  return total;
}

async function memory(count: number): Promise<void> {
  const mb = (b: number) => (b / 1024 / 1024).toFixed(1);
  const per100k = (b: number) => ((b / count) * 100_000) / 1024 / 1024;
  const lines: string[] = [];
  for (const persistent of [false, true]) {
    const dir = persistent ? mkdtempSync(path.join(os.tmpdir(), 'emulator-memory-')) : undefined;
    const endpoints = await child(dir);
    try {
      const before = await endpoints.memory!();
      const queue = `${PARENT}/queues/memory`;
      const agent = new http.Agent({ keepAlive: true, maxSockets: CALLERS });
      const post = (p: string, body: string) =>
        new Promise<void>((resolve, reject) => {
          const req = http.request(
            {
              host: '127.0.0.1',
              port: endpoints.httpPort,
              path: p,
              method: 'POST',
              agent,
              headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
            },
            (res) => {
              res.resume();
              res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      await post(`/v2/${PARENT}/queues`, JSON.stringify({ name: queue }));
      await post(`/v2/${queue}:pause`, '{}');
      // The same task as the createTask rows: a URL of its own, one header, a 25-byte JSON body.
      const body = Buffer.from(JSON.stringify({ kind: 'noop', n: 0 })).toString('base64');
      const started = performance.now();
      let next = 0;
      if (values['memory-via'] === 'grpc') {
        // The official client over gRPC instead (its bytes arrive inside a binary message).
        const tasks = client(endpoints, 'grpc');
        const bytes = Buffer.from(body, 'base64');
        const created = await drive(
          count,
          CALLERS,
          (i) =>
            tasks.createTask({
              parent: queue,
              task: {
                httpRequest: {
                  url: `http://127.0.0.1:9/noop/${i}`,
                  headers: { 'Content-Type': 'application/json' },
                  body: bytes,
                },
              },
            }),
          900_000,
        );
        await tasks.close();
        if (created.count !== count) throw new Error(`only ${created.count} of ${count} tasks created`);
        next = count;
      }
      await Promise.all(
        Array.from({ length: CALLERS }, async () => {
          while (next < count) {
            const i = next++;
            await post(
              `/v2/${queue}/tasks`,
              JSON.stringify({
                task: {
                  httpRequest: {
                    url: `http://127.0.0.1:9/noop/${i}`,
                    headers: { 'Content-Type': 'application/json' },
                    body,
                  },
                },
              }),
            );
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      agent.destroy();
      const after = await endpoints.memory!();
      const journal = dir ? dirBytes(dir) : undefined;
      lines.push(
        `| ${persistent ? 'data directory' : 'memory only'} | ${count.toLocaleString('en')} | ${mb(before.rss)} → ${mb(after.rss)} | ` +
          `${mb(before.heapUsed)} → ${mb(after.heapUsed)} | **${per100k(after.rss - before.rss).toFixed(1)}** | **${per100k(after.heapUsed - before.heapUsed).toFixed(1)}** | ` +
          `${journal === undefined ? '' : `${mb(journal)} MB (${per100k(journal).toFixed(1)} MB per 100k)`} | ${Math.round(count / seconds)} |`,
      );
    } finally {
      await endpoints.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  const cpu = os.cpus();
  console.log(
    `\n${new Date().toISOString()} · Node ${process.version} · ${cpu.length} × ${cpu[0]?.model ?? 'cpu'} · load average ${os.loadavg()[0]!.toFixed(1)}\n`,
  );
  console.log(
    `| emulator (child), created over ${values['memory-via'] === 'grpc' ? 'gRPC (official client)' : 'REST (plain node:http)'} | tasks queued (paused queue) | RSS MB before → after | heap used MB before → after (after GC) | RSS MB per 100k | heap MB per 100k | data directory on disk | creates/s |`,
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const line of lines) console.log(line);
}

// ---------------------------------------------------------------- the default run

async function defaultRun(): Promise<void> {
  const rows: Row[] = [];
  const places =
    values.where === 'both' ? (['in-process', 'child'] as const) : ([values.where] as ('in-process' | 'child')[]);
  for (const where of places) {
    rows.push(...(await run(where)));
    if (values['data-dir']) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'emulator-bench-'));
      try {
        rows.push(...(await run(where, dir)));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  rows.push(await restClientCeiling());
  rows.push(await grpcClientCeiling());
  rows.push(await grpcClientCeiling(true));

  const cpu = os.cpus();
  console.log(
    `\n${new Date().toISOString().slice(0, 10)} · Node ${process.version} · ${cpu.length} × ${cpu[0]?.model ?? 'cpu'} · ${TASKS} tasks, ${CALLERS} callers\n`,
  );
  console.log(
    '| where | measure | count | seconds | per second | p50 ms | p99 ms | CPU µs/task: server + this process |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const ms = (v?: number) => (v === undefined ? '' : v.toFixed(1));
    const cpuCell =
      r.clientCpuUs === undefined
        ? ''
        : `${r.serverCpuUs === undefined ? '–' : Math.round(r.serverCpuUs)} + ${Math.round(r.clientCpuUs)}`;
    console.log(
      `| ${r.where} | ${r.measure} | ${r.count} | ${r.seconds.toFixed(2)} | ${Math.round(r.perSecond)} | ${ms(r.p50)} | ${ms(r.p99)} | ${cpuCell} |`,
    );
  }
}

if (values.memory) await memory(Math.max(1_000, Math.min(1_000_000, Number(values.memory))));
else if (values['with-celery']) await withCelery();
else await defaultRun();

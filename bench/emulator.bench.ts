// Emulator throughput: CreateTask calls per second through the official client over gRPC and over
// REST (several concurrent callers), and end-to-end no-op tasks per second (create → dispatch →
// 200 from a bare node:http server). Loopback only; bounded in count and time.
//
//   node bench/emulator.bench.ts [--tasks 5000] [--callers 32] [--queues 8] [--where both|in-process|child] [--data-dir]
//
// in-process: the emulator shares the process (and the core) with the client and the target, as
// when embedded in `npm start`. child: `backend emulator` runs in its own process, as for services
// in other languages. --data-dir adds a run with a journal (fsync before each acknowledgement).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Emulator, startEmulator } from '@backend/cloud-tasks-emulator';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '5000' },
    callers: { type: 'string', default: '32' },
    queues: { type: 'string', default: '8' },
    where: { type: 'string', default: 'both' },
    'data-dir': { type: 'boolean', default: false },
  },
});
const TASKS = Math.min(50_000, Number(values.tasks));
const CALLERS = Number(values.callers);
// Cloud Tasks caps a queue at 500 dispatches/s, so end-to-end load is spread over several queues.
const QUEUES = Number(values.queues);
const PHASE_TIMEOUT_MS = 60_000;
const PARENT = 'projects/bench/locations/local';

interface Endpoints {
  grpcPort: number;
  httpPort: number;
  close(): Promise<void>;
}

interface Row {
  where: string;
  measure: string;
  count: number;
  seconds: number;
  perSecond: number;
  p50?: number;
  p99?: number;
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

async function child(dataDir?: string): Promise<Endpoints> {
  const bin = new URL('../bin/backend.js', import.meta.url).pathname;
  const args = ['emulator', '--grpc-port', '0', '--http-port', '0', ...(dataDir ? ['--data-dir', dataDir] : [])];
  const proc: ChildProcess = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
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
    close: async () => {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** Runs `total` calls from `callers` concurrent loops; returns the elapsed time and per-call latencies. */
async function drive(total: number, callers: number, call: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
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
  await drive(200, CALLERS, request); // warm-up: connections, JIT
  const result = await drive(TASKS, CALLERS, request);
  await tasks.close();
  return { where, measure: `createTask, ${transport}`, ...result, perSecond: result.count / result.seconds };
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
  await drive(200, CALLERS, () => post(path, body));
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
  await drive(200, CALLERS, request);
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

async function endToEnd(where: string, endpoints: Endpoints): Promise<Row> {
  const target = await startTarget();
  const tasks = client(endpoints, 'grpc');
  const queues = Array.from({ length: QUEUES }, (_, i) => `${PARENT}/queues/e2e-${i}`);
  for (const name of queues) await tasks.createQueue({ parent: PARENT, queue: { name } });
  const create = (i: number) =>
    tasks.createTask({ parent: queues[i % QUEUES], task: { httpRequest: { url: target.url } } });
  await drive(200, CALLERS, create); // warm-up
  while (target.received() < 200) await new Promise((r) => setTimeout(r, 5));
  const base = target.received();
  const started = performance.now();
  const created = await drive(TASKS, CALLERS, create);
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  while (target.received() - base < created.count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  const seconds = (performance.now() - started) / 1000;
  const count = target.received() - base;
  await tasks.close();
  await target.close();
  return { where, measure: `end-to-end (create → 200), ${QUEUES} queues`, count, seconds, perSecond: count / seconds };
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
    ];
  } finally {
    await endpoints.close();
  }
}

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

const cpu = os.cpus();
console.log(
  `\n${new Date().toISOString().slice(0, 10)} · Node ${process.version} · ${cpu.length} × ${cpu[0]?.model ?? 'cpu'} · ${TASKS} tasks, ${CALLERS} callers\n`,
);
console.log('| where | measure | count | seconds | per second | p50 ms | p99 ms |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const ms = (v?: number) => (v === undefined ? '' : v.toFixed(1));
  console.log(
    `| ${r.where} | ${r.measure} | ${r.count} | ${r.seconds.toFixed(2)} | ${Math.round(r.perSecond)} | ${ms(r.p50)} | ${ms(r.p99)} |`,
  );
}

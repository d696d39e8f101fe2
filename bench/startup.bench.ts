// Start-up time: from process start to the first 200 on /readyz, for embedded PGlite (migrations
// already applied) and for PostgreSQL (BENCH_DATABASE_URL, default the local server), locally (with
// the embedded emulator) and in cloud mode (what a Cloud Run instance runs), in cloud mode also with
// tracing and metrics exported (to a local endpoint where nothing listens: what is measured is the
// start, not the export).
// Run: node bench/startup.bench.ts [runs] [--cloud-only] [--reference <checkout>]
//   (bounded: `runs` starts per configuration, default 10). With --reference, another checkout of
//   this repository (its own node_modules, or a symlink to these) is started in cloud mode in turn
//   with the others, on its own database migrated by its own code, and each cloud row gets its
//   ratio to it: on a machine whose speed drifts, the ratio is what compares across days.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { BIN, freePort } from '../test/helpers/cli-process.ts';

const runs = Number(process.argv[2] ?? 10);
const cloudOnly = process.argv.includes('--cloud-only');
const referenceAt = process.argv.indexOf('--reference');
const reference = referenceAt > 0 ? process.argv[referenceAt + 1] : undefined;
const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** CPU time (user + system) the last started process had used when it became ready. */
let lastCpuMs = Number.NaN;

/** From /proc (Linux): clock ticks of 10 ms. Less sensitive than wall time to a busy machine. */
function cpuMsOf(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

async function startOnce(env: Record<string, string>, bin = BIN): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [bin, 'serve'], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', LOG_FORMAT: 'json' },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      // Polling is the measurement itself here (a benchmark, not a test): 2 ms resolution.
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) {
        const wall = performance.now() - started;
        lastCpuMs = cpuMsOf(child.pid);
        return wall;
      }
      if (performance.now() - started > 30_000) throw new Error('did not become ready in 30 s');
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

function summary(
  label: string,
  samples: number[],
  cpu: number[] = [],
  ref?: { wall: number[]; cpu: number[] },
): string {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  const cpuP50 = cpu.length > 0 ? median(cpu).toFixed(0) : '';
  const ratio = ref
    ? ` ${(median(samples) / median(ref.wall)).toFixed(2)} (CPU ${(median(cpu) / median(ref.cpu)).toFixed(2)}) |`
    : reference
      ? ' |'
      : '';
  return `| ${label} | ${runs} | ${at(0).toFixed(0)} | ${at(0.5).toFixed(0)} | ${at(0.9).toFixed(0)} | ${cpuP50} |${ratio}`;
}

const dataDir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
const rows: string[] = [];
try {
  // First start creates and migrates the embedded database; not counted.
  if (!cloudOnly) {
    const first = await startOnce({ DATA_DIR: dataDir });
    console.log(`first start (creates the PGlite data directory): ${first.toFixed(0)} ms`);
    const pglite: number[] = [];
    for (let i = 0; i < runs; i++) pglite.push(await startOnce({ DATA_DIR: dataDir }));
    rows.push(summary('PGlite, migrations applied', pglite));
  }

  const dbName = `bench_startup_${process.pid}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  try {
    const url = new URL(pgUrl);
    url.pathname = `/${dbName}`;
    await startOnce({ DATA_DIR: dataDir, DATABASE_URL: url.toString() }); // migrates
    if (!cloudOnly) {
      const postgres: number[] = [];
      for (let i = 0; i < runs; i++)
        postgres.push(await startOnce({ DATA_DIR: dataDir, DATABASE_URL: url.toString() }));
      rows.push(summary('PostgreSQL, migrations applied, embedded emulator', postgres));
    }
    // What a Cloud Run instance does: no emulator; the clients connect on first use.
    const cloudEnv = {
      DATA_DIR: dataDir,
      DATABASE_URL: url.toString(),
      TASKS_BACKEND: 'cloud',
      GCP_PROJECT_ID: 'bench-project',
      GCP_LOCATION: 'us-central1',
      PUBLIC_BASE_URL: 'https://backend-bench.a.run.app',
      SESSION_SECRET: 'b'.repeat(40),
      TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks-invoker@bench-project.iam.gserviceaccount.com',
    };
    // The same with tracing and metrics on: spans and metrics over OTLP/HTTP, or metrics served on a
    // Prometheus port. Started in turn with the plain cloud start, so both see the same machine.
    const deadEndpoint = `http://127.0.0.1:${await freePort()}`;
    const otlpEnv = {
      ...cloudEnv,
      TRACE_EXPORTER: 'otlp',
      METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: deadEndpoint,
    };
    const promEnv = async () => ({
      ...cloudEnv,
      TRACE_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: deadEndpoint,
      METRICS_EXPORTER: 'prometheus',
      METRICS_PORT: String(await freePort()),
    });
    let refEnv: Record<string, string> | undefined;
    let refBin: string | undefined;
    if (reference) {
      refBin = join(reference, 'bin', 'backend.js');
      await admin.query(`CREATE DATABASE ${dbName}_ref`);
      const refUrl = new URL(pgUrl);
      refUrl.pathname = `/${dbName}_ref`;
      refEnv = { ...cloudEnv, DATABASE_URL: refUrl.toString() };
      await startOnce(refEnv, refBin); // migrates the reference's database with its own code
    }
    const configs = [
      ...(refEnv
        ? [{ label: `reference (${reference}), TASKS_BACKEND=cloud`, env: async () => refEnv!, bin: refBin }]
        : []),
      { label: 'PostgreSQL, migrations applied, TASKS_BACKEND=cloud', env: async () => cloudEnv },
      { label: 'the same, traces and metrics over OTLP (dead endpoint)', env: async () => otlpEnv },
      { label: 'the same, traces over OTLP, metrics on a Prometheus port', env: promEnv },
    ].map((c) => ({ bin: BIN as string | undefined, ...c, wall: [] as number[], cpu: [] as number[] }));
    for (const c of configs) await startOnce(await c.env(), c.bin); // warms each checkout's compile cache
    for (let i = 0; i < runs; i++) {
      // Alternating order, so that a drift in the machine's speed falls on every configuration alike.
      for (const c of i % 2 === 0 ? configs : [...configs].reverse()) {
        c.wall.push(await startOnce(await c.env(), c.bin));
        c.cpu.push(lastCpuMs);
      }
    }
    const ref = reference ? configs[0] : undefined;
    for (const c of configs) rows.push(summary(c.label, c.wall, c.cpu, ref));
  } finally {
    if (reference) await admin.query(`DROP DATABASE IF EXISTS ${dbName}_ref WITH (FORCE)`);
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(
  reference
    ? '\n| configuration | runs | min ms | p50 ms | p90 ms | CPU p50 ms | p50 / reference |\n|---|---|---|---|---|---|---|'
    : '\n| configuration | runs | min ms | p50 ms | p90 ms | CPU p50 ms |\n|---|---|---|---|---|---|',
);
for (const r of rows) console.log(r);

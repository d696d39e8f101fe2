// Start-up time: from process start to the first 200 on /readyz, for embedded PGlite (migrations
// already applied) and for PostgreSQL (BENCH_DATABASE_URL, default the local server), locally (with
// the embedded emulator) and in cloud mode (what a Cloud Run instance runs).
// Run: node bench/startup.bench.ts [runs]   (bounded: `runs` starts per configuration, default 10)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { BIN, freePort } from '../test/helpers/cli-process.ts';

const runs = Number(process.argv[2] ?? 10);
const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function startOnce(env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, 'serve'], {
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
      if (ok) return performance.now() - started;
      if (performance.now() - started > 30_000) throw new Error('did not become ready in 30 s');
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

function summary(label: string, samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `| ${label} | ${runs} | ${at(0).toFixed(0)} | ${at(0.5).toFixed(0)} | ${at(0.9).toFixed(0)} |`;
}

const dataDir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
const rows: string[] = [];
try {
  // First start creates and migrates the embedded database; not counted.
  const first = await startOnce({ DATA_DIR: dataDir });
  console.log(`first start (creates the PGlite data directory): ${first.toFixed(0)} ms`);
  const pglite: number[] = [];
  for (let i = 0; i < runs; i++) pglite.push(await startOnce({ DATA_DIR: dataDir }));
  rows.push(summary('PGlite, migrations applied', pglite));

  const dbName = `bench_startup_${process.pid}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  try {
    const url = new URL(pgUrl);
    url.pathname = `/${dbName}`;
    await startOnce({ DATA_DIR: dataDir, DATABASE_URL: url.toString() }); // migrates
    const postgres: number[] = [];
    for (let i = 0; i < runs; i++) postgres.push(await startOnce({ DATA_DIR: dataDir, DATABASE_URL: url.toString() }));
    rows.push(summary('PostgreSQL, migrations applied, embedded emulator', postgres));
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
    const cloud: number[] = [];
    for (let i = 0; i < runs; i++) cloud.push(await startOnce(cloudEnv));
    rows.push(summary('PostgreSQL, migrations applied, TASKS_BACKEND=cloud', cloud));
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
console.log('\n| configuration | runs | min ms | p50 ms | p90 ms |\n|---|---|---|---|---|');
for (const r of rows) console.log(r);

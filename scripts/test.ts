// `npm test`: the whole suite on embedded PGlite; then, when TEST_DATABASE_URL names a PostgreSQL
// server, every database-backed test file again on PostgreSQL (a fresh database per file, cloned
// from a template migrated once). Arguments narrow the run: `npm test -- test/unit/config.test.ts`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate } from '../src/db/migrate.ts';
import { dumpPgliteDataDir, openPglite } from '../src/db/pglite.ts';
import { createPostgresTemplate, dropLeftoverTestDbs, dropPostgresDb } from '../test/helpers/test-db.ts';

// Files under these folders use the database and run on both engines; the rest run once.
const DATABASE_SUITES = ['test/integration', 'test/contract', 'test/fuzz'];
// Browser tests (real Chromium) run once, being slow: on PostgreSQL when TEST_DATABASE_URL is set
// (one of them needs a second service process on the same database), else on PGlite.
const BROWSER_SUITE = 'test/browser';
// The emulator package's own tests and its conformance suite (packages/cloud-tasks-emulator) run
// once, as the package's \`npm test\` runs them.
const EMULATOR_SUITES = ['packages/cloud-tasks-emulator/test', 'packages/cloud-tasks-emulator/conformance'];
const ALL_SUITES = ['test/unit', ...EMULATOR_SUITES, ...DATABASE_SUITES];
const concurrency = process.env.TEST_CONCURRENCY ?? '4';

const args = process.argv.slice(2);
const work = mkdtempSync(join(tmpdir(), 'backend-test-'));
let failed = false;

function run(label: string, patterns: string[], env: Record<string, string>): void {
  const files = patterns.map((p) => (p.endsWith('.ts') ? p : `${p}/**/*.test.ts`));
  console.log(`\n▶ ${label}\n`);
  const result = spawnSync(
    process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=120000', ...files],
    { stdio: 'inherit', env: { ...process.env, TEST_RUN_PID: String(process.pid), ...env } },
  );
  if (result.status !== 0) failed = true;
}

try {
  const pglite = await openPglite({ dataDir: null });
  await migrate(pglite);
  const dump = join(work, 'pglite-template.tar');
  writeFileSync(dump, Buffer.from(await (await dumpPgliteDataDir(pglite)).arrayBuffer()));
  await pglite.close();

  const selected = args.length > 0 ? args : [...ALL_SUITES, ...(process.env.TEST_DATABASE_URL ? [] : [BROWSER_SUITE])];
  run('suite on PGlite', existing(selected), { TEST_DB: 'pglite', TEST_PGLITE_TEMPLATE: dump });

  if (process.env.TEST_DATABASE_URL) {
    const onPostgres = args.length > 0 ? args : [...DATABASE_SUITES, BROWSER_SUITE];
    const template = `backend_test_template_${process.pid}`;
    await dropLeftoverTestDbs();
    await createPostgresTemplate(template);
    try {
      run('database suites on PostgreSQL', existing(onPostgres), { TEST_DB: 'postgres', TEST_PG_TEMPLATE: template });
    } finally {
      await dropPostgresDb(template);
    }
  } else {
    console.log('\nTEST_DATABASE_URL is not set: the PostgreSQL leg was skipped.');
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

function existing(patterns: string[]): string[] {
  return patterns.filter((p) => p.endsWith('.ts') || spawnSync('test', ['-d', p]).status === 0);
}

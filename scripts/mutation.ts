// `npm run mutation [-- <module> ...]`: mutation testing (StrykerJS, command runner) of the modules
// that guard money and access. Each module's guard functions are mutated one mutant at a time and
// run against only that module's own test files (`node --test <files>` on PGlite), so a mutant
// counts as killed only by the tests meant to catch it. Not a CI step: a module takes minutes to an
// hour. Reports (HTML, JSON, and the incremental file that lets a re-run test only changed mutants)
// go to reports/mutation/<module>.*; the score per module is printed at the end and recorded in
// docs/testing.md ("Mutation testing").
// MUTATION_CONCURRENCY (default 2) sets how many mutants run at once. MUTATION_INCREMENTAL=1 reuses
// the last run's results for mutants whose code did not change; the command runner cannot tell
// which tests changed, so after adding tests run without it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stryker } from '@stryker-mutator/core';
import { migrate } from '../src/db/migrate.ts';
import { dumpPgliteDataDir, openPglite } from '../src/db/pglite.ts';

interface MutationModule {
  /** Files (with line ranges: `file.ts:10-80`) whose code is mutated. */
  mutate: string[];
  /** The test files that must kill those mutants, the fastest first. */
  tests: string[];
  /** Added to 1.5 x the unmutated run's duration before a mutant counts as timed out. (Default: 60 s) */
  timeoutMS?: number;
}

// Line ranges cover the guard functions only (not the helpers that build test fixtures or the
// payload schemas next to them); keep them in step when the files move.
export const MODULES: Record<string, MutationModule> = {
  'push-auth': {
    // The claim checks, the IAM-mode check, the secret check, the mode switch and the mapping of
    // jose's errors to refusals. The token cache (fromCache, verifyOidc's bookkeeping) is left out:
    // 150 more mutants that only the integration tests reach, at ~15 s each.
    mutate: ['src/tasks/push-auth.ts:115-124', 'src/tasks/push-auth.ts:195-277'],
    tests: [
      'test/unit/push-auth.test.ts',
      'test/integration/push-auth.test.ts',
      'test/integration/push-auth-cache.test.ts',
    ],
  },
  'whatsapp-signature': {
    // verifyWebhookSignature and verifyHandshake
    mutate: ['src/domains/whatsapp/webhook.ts:16-50'],
    tests: ['test/unit/whatsapp.test.ts'],
  },
  'stripe-signature': {
    // verifyStripeSignature
    mutate: ['src/domains/credits/stripe-webhook.ts:22-52'],
    tests: ['test/unit/credits.test.ts'],
  },
  ssrf: {
    // isPublicAddress, the filtering lookup, the connector's peer check and checkUrl. fetchPage's
    // redirect loop and body reading are left out: their mutants mostly hang until the timeout.
    mutate: ['src/domains/scraper/safe-fetch.ts:141-266'],
    tests: ['test/unit/scraper/safe-fetch.test.ts'],
    // The file runs in ~2 s; a mutant that hangs a request is cut short after ~15 s.
    timeoutMS: 10_000,
  },
  outcome: {
    mutate: ['src/tasks/outcome.ts'],
    tests: ['test/unit/outcome.test.ts', 'test/integration/push-route.test.ts'],
  },
  'push-route': {
    // The outcome mapping's other half, in the route: authentication in onRequest (before the body
    // is read), the 401 and 404 answers, and the outcomes built from a refused claim, a lost lease
    // and a failed attempt (notClaimed, fenced, failed, the attempt numbers).
    mutate: ['src/tasks/push-route.ts:53-94', 'src/tasks/push-route.ts:347-417'],
    // push-route-answers checks each answer, event and log line of these paths (the fastest).
    tests: [
      'test/integration/push-route-answers.test.ts',
      'test/integration/push-auth-before-body.test.ts',
      'test/integration/push-route.test.ts',
    ],
  },
  'task-runs': {
    // The claim and finish statements and the code that builds their parameters and reads their rows:
    // ClaimResult to RECORD_REFUSED, and FinishInput to recordRefused (attempts in their own table).
    mutate: ['src/tasks/task-runs.repository.ts:60-176', 'src/tasks/task-runs.repository.ts:240-422'],
    // The repository's own test checks every answer as returned (the route's batcher falls back to
    // one-at-a-time statements, which hides a wrong batched answer from the route's tests).
    tests: [
      'test/integration/task-runs.repository.test.ts',
      'test/integration/push-route.test.ts',
      'test/integration/push-batch.test.ts',
    ],
  },
  credits: {
    // move (every ledger entry, its idempotency key and the balance check) and the holds
    // (reserve, settle, release, adjust): what changes a balance. From inTransaction to positive,
    // and from charge to adjust.
    mutate: ['src/domains/credits/credits.service.ts:40-109', 'src/domains/credits/credits.service.ts:189-291'],
    // The guards file calls the service on a bare database (fast); credits.test.ts adds the races.
    tests: ['test/integration/credits-guards.test.ts', 'test/integration/credits.test.ts'],
  },
};

const concurrency = Number(process.env.MUTATION_CONCURRENCY ?? '2');
const selected = process.argv.slice(2);
for (const name of selected) {
  if (!MODULES[name]) {
    console.error(`unknown module ${name}; known: ${Object.keys(MODULES).join(', ')}`);
    process.exit(2);
  }
}
const names = selected.length > 0 ? selected : Object.keys(MODULES);

// The PGlite template, migrated once (as scripts/test.ts does), shared by every mutant's test run.
const work = mkdtempSync(join(tmpdir(), 'backend-mutation-'));
const scores: string[] = [];
let failed = false;
try {
  const pglite = await openPglite({ dataDir: null });
  await migrate(pglite);
  const dump = join(work, 'pglite-template.tar');
  writeFileSync(dump, Buffer.from(await (await dumpPgliteDataDir(pglite)).arrayBuffer()));
  await pglite.close();
  // The command runner hands its own environment to every test run.
  Object.assign(process.env, { TEST_DB: 'pglite', TEST_PGLITE_TEMPLATE: dump, TEST_RUN_PID: String(process.pid) });
  mkdirSync('reports/mutation', { recursive: true });

  for (const name of names) {
    const module = MODULES[name]!;
    console.log(`\n▶ mutation testing: ${name} (${module.mutate.join(', ')})\n`);
    const stryker = new Stryker({
      testRunner: 'command',
      commandRunner: {
        // One `node --test` per file, fastest first, chained with &&: the first file that fails
        // kills the mutant and the slower ones are not run.
        command: module.tests.map((file) => `${process.execPath} --test --test-timeout=120000 ${file}`).join(' && '),
      },
      mutate: module.mutate,
      plugins: [],
      checkers: [],
      coverageAnalysis: 'off',
      concurrency,
      // A mutant that hangs (a loop made endless, an await that never settles) times out: the
      // unmutated run's duration x 1.5 + 60 s.
      timeoutMS: module.timeoutMS ?? 60_000,
      timeoutFactor: 1.5,
      incremental: process.env.MUTATION_INCREMENTAL === '1',
      incrementalFile: `reports/mutation/${name}.incremental.json`,
      reporters: ['progress', 'clear-text', 'html', 'json'],
      htmlReporter: { fileName: `reports/mutation/${name}.html` },
      jsonReporter: { fileName: `reports/mutation/${name}.json` },
      clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
      tempDirName: '.stryker-tmp',
      cleanTempDir: true,
      // The sandbox is a copy of the project: leave out what the tests never read.
      ignorePatterns: ['.data', 'bench', 'docs', 'reports', 'coverage', 'test-results', '.ci', '*.log'],
    });
    const results = await stryker.runMutationTest();
    const count = (...statuses: string[]) => results.filter((r) => statuses.includes(r.status)).length;
    const detected = count('Killed', 'Timeout');
    const undetected = count('Survived', 'NoCoverage');
    const score = detected + undetected === 0 ? 100 : (100 * detected) / (detected + undetected);
    scores.push(
      `${name.padEnd(20)} ${score.toFixed(1).padStart(5)} %  killed ${count('Killed')}, timeout ${count('Timeout')}, ` +
        `survived ${undetected}, errors ${count('CompileError', 'RuntimeError')}, ignored ${count('Ignored')}`,
    );
    if (score < 85) failed = true;
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`\nMutation scores (goal: 85 % per module)\n${scores.join('\n')}`);
process.exit(failed ? 1 : 0);

// The conformance suite against this emulator, run as a user runs it: a child process on free
// ports (with Cloud Tasks' 7-day queue tombstone and a queue created at start), driven over gRPC,
// REST and plain HTTP by suite.ts, which knows only its addresses. Each case becomes a subtest.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Case, type CaseResult, loadCases, runSuite, type SuiteOptions, TRANSPORTS } from './suite.ts';

const PROJECT = 'conformance';
const LOCATION = 'us-central1';
const PRESET = `projects/${PROJECT}/locations/${LOCATION}/queues/preset`;
const ARGS = ['--grpc-port', '0', '--http-port', '0', '--queue-tombstone', '7d', '--queue', PRESET];

interface Child {
  grpc: string;
  http: string;
  stop(): Promise<void>;
}

/** The package's own command, as `npx cloud-tasks-emulator` runs it. */
const BIN = fileURLToPath(new URL('../bin/cloud-tasks-emulator.js', import.meta.url));

/** Starts the emulator and reads the addresses it prints once it listens. */
async function startChild(): Promise<Child> {
  const proc: ChildProcess = spawn(process.execPath, [BIN, ...ARGS], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d) => {
    err += d;
  });
  const addresses = await new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const grpc = /gRPC\s+(127\.0\.0\.1:\d+)/.exec(out);
      const http = /REST\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (grpc && http) resolve({ grpc: grpc[1]!, http: http[1]! });
    });
    proc.once('exit', (code) => reject(new Error(`the emulator exited (${code}) before listening:\n${out}${err}`)));
  });
  return {
    ...addresses,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** One subtest per case run, failing with the suite's own account of what differed. */
async function report(t: TestContext, results: CaseResult[]): Promise<void> {
  for (const r of results.filter((x) => x.skipped !== `not a ${x.transport} case` && x.skipped !== 'not selected')) {
    await t.test(`${r.id}: ${r.title}`, (st) => {
      if (r.skipped) st.skip(r.skipped);
      else assert.deepEqual(r.errors, [], r.errors.join('\n'));
    });
  }
}

describe('the conformance suite against this emulator', () => {
  let child: Child;
  let options: SuiteOptions;
  before(async () => {
    child = await startChild();
    options = { grpc: child.grpc, http: child.http, project: PROJECT, location: LOCATION, presetQueue: PRESET };
  });
  after(() => child?.stop());

  for (const transport of TRANSPORTS) {
    test(`over ${transport}`, async (t) => {
      const run = await runSuite({ ...options, transports: [transport] });
      await report(t, run.results);
      assert.ok(run.passed > 0, 'some cases ran');
      assert.equal(run.skipped, run.results.filter((r) => r.skipped === `not a ${transport} case`).length);
      assert.equal(run.failed, 0);
    });
  }

  test('a second run against the same emulator passes too (names are unique per run)', async (t) => {
    const run = await runSuite({ ...options, only: ['tombstones', 'queue-already-exists'] });
    await report(t, run.results);
    assert.ok(run.passed >= 3 * 4);
    assert.equal(run.failed, 0);
  });

  test('a case whose expectation differs from the answer fails, saying where', async () => {
    const original = loadCases().find((c) => c.id === 'queue-already-exists')!;
    const altered = structuredClone(original) as Case;
    altered.steps[1]!.expect!.error!.message = 'Queue already exist';
    const run = await runSuite({ ...options, cases: [altered] });
    assert.equal(run.failed, 3, 'on each transport');
    for (const r of run.results) {
      assert.match(r.errors[0]!, /^step 2: message: expected "Queue already exist", got "Queue already exists"$/);
    }
  });
});

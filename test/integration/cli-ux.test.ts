// The command line as a new user meets it: the version, the task list in `enqueue --help`, one
// line within 3 s when the task backend is not running, `--json` on the listings, a running
// service found through its control file whatever ports it was given, and how long the read-only
// commands take of their own time (docs/cli.md).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, type TestContext, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { registry } from '../../src/task-registry.ts';
import { type CliResult, freePort, runBackend, servicePorts, startBackend } from '../helpers/cli-process.ts';
import { createTestDb, testDbKind } from '../helpers/test-db.ts';

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  engines: { node: string };
  devDependencies: Record<string, string>;
};

const dataDirs: string[] = [];
const tempDataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'backend-cli-ux-'));
  dataDirs.push(d);
  return d;
};
after(() => {
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

/** The stated goal for a read-only command's own time (Node's start aside). */
const TARGET_MS = 300;
/**
 * What the test asserts: the best of three runs, by CPU time (what the command itself costs, which
 * other suites on the same two cores do not change), under three times the goal; and by wall time
 * under a bound that only a command waiting on something (a timeout, a retry) would pass. One slow
 * run on a shared machine says nothing. The figures are printed as diagnostics, marked against the goal.
 */
const BOUND_MS = 3 * TARGET_MS;
const WALL_BOUND_MS = 10 * TARGET_MS;

/** Runs a command with BACKEND_CLI_TIMING and returns its result and own time (bin/backend.js). */
async function timed(
  args: string[],
  env: Record<string, string>,
): Promise<CliResult & { ownMs: number; ownCpuMs: number }> {
  const r = await runBackend(args, { ...env, BACKEND_CLI_TIMING: '1' });
  const m = /^backend timing: (\{.*\})$/m.exec(r.stderr);
  assert.ok(m, `no timing line from ${args.join(' ')}: ${r.stderr}`);
  const { ownMs, ownCpuMs } = JSON.parse(m[1]!) as { ownMs: number; ownCpuMs: number };
  return { ...r, stderr: r.stderr.replace(m[0], '').trim(), ownMs, ownCpuMs };
}

/** Best and median of three runs; asserts every run exits 0 and the best is within BOUND_MS. */
async function measure(t: TestContext, args: string[], env: Record<string, string>): Promise<number> {
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await timed(args, env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    cpu.push(r.ownCpuMs);
    wall.push(r.ownMs);
  }
  const byValue = (a: number, b: number) => a - b;
  cpu.sort(byValue);
  wall.sort(byValue);
  const [best, median] = [cpu[0]!, cpu[1]!];
  t.diagnostic(
    `backend ${args.join(' ')}: own time best ${wall[0]} ms, median ${wall[1]} ms (${wall[0]! <= TARGET_MS ? 'within' : 'OVER'} the ${TARGET_MS} ms goal); CPU best ${best} ms, median ${median} ms`,
  );
  assert.ok(best < BOUND_MS, `backend ${args.join(' ')} took at best ${best} ms of CPU of its own`);
  assert.ok(
    wall[0]! < WALL_BOUND_MS,
    `backend ${args.join(' ')} took at best ${wall[0]} ms of its own: waiting on something?`,
  );
  return best;
}

const jsonLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('backend command line for a new user', { skip: testDbKind === 'postgres' && 'database-independent' }, () => {
  test('--version prints the version in package.json', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runBackend([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), packageJson.version);
    }
  });

  test('enqueue --help lists every registered task with its queue', async () => {
    const r = await runBackend(['enqueue', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Tasks \\(${registry.tasks.size}\\):$`, 'm'));
    for (const task of registry.tasks.values()) {
      const escaped = task.name.replace(/\./g, '\\.');
      assert.match(r.stdout, new RegExp(`^  ${escaped} +queue ${task.queue}\\b`, 'm'), task.name);
    }
    assert.match(r.stdout, /health\.check +queue maintenance +also on schedule health-check \(\*\/5 \* \* \* \* UTC\)/);
  });

  test('an unreachable task backend: one line naming the address, exit 1, within 3 s, for every command that talks to it', async () => {
    const port = await freePort(); // closed: nothing listens there
    const env = { DATA_DIR: tempDataDir(), EMULATOR_GRPC_PORT: String(port) };
    const expected = `backend: cannot reach the task backend at 127.0.0.1:${port}: is \`npm start\` (or \`npx backend emulator\`) running?`;
    for (const args of [
      ['queues', 'sync'],
      ['queues', 'sync', '--dry-run', '--json'],
      ['schedules', 'sync', '--dry-run'],
      ['enqueue', 'health.check', '{}'],
    ]) {
      const started = performance.now();
      const r = await runBackend(args, env);
      const ms = performance.now() - started;
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(r.stderr, `${expected}\n`, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
      assert.ok(ms < 3000, `${args.join(' ')} took ${Math.round(ms)} ms, Node's start included`);
    }
    // A mistyped task is named as such before any connection is tried.
    const typo = await runBackend(['enqueue', 'health.chek', '{}'], env);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /^backend: No task named "health\.chek"\. Known tasks: .*health\.check.*\n$/);
  });

  test("package.json's engines name Node 24 as the runtime and admit npm's own Node 20 and 22, which only launch it", () => {
    const ranges = packageJson.engines.node.split('||').map((r) => r.trim());
    assert.equal(ranges[0], '>=24.11.0 <25', 'the runtime comes first');
    assert.ok(ranges.includes('^20.0.0'), 'npm on Node 20 would print EBADENGINE for every npx backend');
    assert.match(packageJson.devDependencies.node ?? '', /^24\.\d+\.\d+$/);
    const bin = readFileSync(new URL('../../bin/backend.js', import.meta.url), 'utf8');
    assert.match(bin, /node_modules\/node\/bin\/node/, 'bin/backend.js re-runs itself with the pinned Node');
  });

  test('every listing (a command that takes --limit) has --json, and docs/cli.md describes the output of each command that has it', () => {
    const program = buildProgram({ out: () => {}, err: () => {} }, () => {
      throw new Error('no command runs here');
    });
    const named = (c: Command, prefix: string[] = []): [string, Command][] =>
      c.commands.flatMap((sub) => [[[...prefix, sub.name()].join(' '), sub], ...named(sub, [...prefix, sub.name()])]);
    const takes = (c: Command, flag: string) => c.options.some((o) => o.long === flag);
    const commands = named(program);
    const withJson = commands.filter(([, c]) => takes(c, '--json')).map(([name]) => name);
    const listings = commands.filter(([, c]) => takes(c, '--limit')).map(([name]) => name);
    assert.ok(listings.length >= 5, `listings found: ${listings.join(', ')}`);
    assert.deepEqual(
      listings.filter((name) => !withJson.includes(name)),
      [],
      'a listing without --json',
    );

    const docs = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
    // The command table: the rows whose flags include --json.
    const tabled = [...docs.matchAll(/^\| `([a-z ]+?)(?: [<[][^`]*)?` \|((?:[^|\\]|\\.)*)\|/gm)]
      .filter((m) => m[2]!.includes('`--json`'))
      .map((m) => m[1]!);
    assert.deepEqual([...tabled].sort(), [...withJson].sort(), 'the command table of docs/cli.md');
    // The `--json` section: each command's output described, as "`<command> … --json`".
    const section = docs.slice(docs.indexOf('## `--json`'), docs.indexOf('\n## ', docs.indexOf('## `--json`') + 1));
    const described = new Set([...section.matchAll(/`([a-z ]+?)(?: <[^>]+>)? --json`/g)].map((m) => m[1]!));
    assert.deepEqual([...described].sort(), [...withJson].sort(), 'the --json section of docs/cli.md');
    assert.match(section, /one JSON object per line/);
  });

  test('outbox list --json: one line per row with the documented fields; an empty listing prints nothing', async () => {
    const dataDir = tempDataDir();
    const env = { DATA_DIR: dataDir, EMULATOR_GRPC_PORT: String(await freePort()) };
    // No service runs: the commands open the data directory themselves (PGlite: one process at a
    // time, so this test closes it before they run).
    const db = await openPglite({ dataDir: join(dataDir, 'pglite') });
    try {
      await migrate(db);
      await db.query(
        `INSERT INTO task_outbox (task, queue, task_id, idempotency_key, payload, deadline_seconds, created_at,
                                  send_attempts, last_error, next_attempt_at, parked_at)
         VALUES ('health.check', 'maintenance', 'tid-waiting', 'k-waiting', '{}', 60, now(), 1, 'UNAVAILABLE', now(), NULL),
                ('health.check', 'maintenance', 'tid-parked', 'k-parked', '{}', 60, now(), 10, 'INVALID_ARGUMENT', NULL, now())`,
      );
    } finally {
      await db.close();
    }
    const all = await runBackend(['outbox', 'list', '--json'], env);
    assert.equal(all.code, 0, all.stderr);
    const rows = jsonLines(all.stdout);
    assert.equal(all.stdout.trim().split('\n').length, 2, 'one line per row, nothing else');
    for (const row of rows) {
      assert.deepEqual(Object.keys(row), [
        'id',
        'task',
        'queue',
        'taskId',
        'key',
        'state',
        'attempts',
        'lastError',
        'createdAt',
        'ageMs',
        'nextAttemptAt',
        'parkedAt',
        'scheduleTime',
      ]);
    }
    assert.deepEqual(
      rows.map((r) => [r.taskId, r.state, r.attempts, r.lastError]),
      [
        ['tid-waiting', 'waiting', 1, 'UNAVAILABLE'],
        ['tid-parked', 'parked', 10, 'INVALID_ARGUMENT'],
      ],
    );
    assert.equal(rows[0]!.parkedAt, null, 'absent values are null, never missing');
    const parked = jsonLines((await runBackend(['outbox', 'list', '--parked', '--json'], env)).stdout);
    assert.deepEqual(
      parked.map((r) => r.taskId),
      ['tid-parked'],
    );
    const empty = await runBackend(['whatsapp', 'outbox', '--json'], env);
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, '', 'an empty listing prints nothing');
  });

  test('--help, --version and enqueue --help answer quickly', async (t) => {
    for (const args of [['--version'], ['--help'], ['enqueue', '--help'], ['runs', 'list', '--help']]) {
      await measure(t, args, {});
    }
  });
});

describe(`a second terminal while npm start runs on other ports (${testDbKind})`, () => {
  test('commands find the service through its control file; --json lines parse with their fields; read-only commands are quick', async (t) => {
    const db = testDbKind === 'postgres' ? await createTestDb() : undefined;
    const dataDir = tempDataDir();
    const serviceEnv: Record<string, string> = {
      ...(await servicePorts()), // random emulator ports, not the defaults
      DATA_DIR: dataDir,
      WHATSAPP_APP_SECRET: 'cli-ux-app-secret',
      SIGNUP_CREDITS: '5',
      ...(db?.url ? { DATABASE_URL: db.url } : {}),
    };
    const service = startBackend(['serve'], serviceEnv);
    // The second terminal knows only DATA_DIR: no ports, no DATABASE_URL.
    const env = { DATA_DIR: dataDir };
    try {
      // The banner comes after the control file is written (the "listening on" log line, before).
      await service.waitForLine(/backend is running on/);
      const control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as {
        service: { http: string; database: string; emulator: { grpc: string; http: string } };
      };
      assert.match(control.service.http, new RegExp(`:${serviceEnv.PORT}$`));
      assert.match(control.service.database, db ? /^PostgreSQL / : /^embedded PGlite in .*pglite$/);
      assert.deepEqual(control.service.emulator, {
        grpc: `127.0.0.1:${serviceEnv.EMULATOR_GRPC_PORT}`,
        http: `http://127.0.0.1:${serviceEnv.EMULATOR_HTTP_PORT}`,
      });

      const enqueued = await runBackend(['enqueue', 'health.check', '{}'], env);
      assert.equal(enqueued.code, 0, enqueued.stderr);
      await service.waitForLine(/"message":"POST \/tasks\/health\.check 200"/);
      const simulated = await runBackend(['whatsapp', 'simulate', 'balance', '--from', '15550007777'], env);
      assert.equal(simulated.code, 0, simulated.stderr);
      await service.waitForLine(/whatsapp offline outbox: reply to 15550007777/);

      const runs = await runBackend(['runs', 'list', '--task', 'health.check', '--json'], env);
      assert.equal(runs.code, 0, runs.stderr);
      const [run] = jsonLines(runs.stdout);
      assert.deepEqual(Object.keys(run ?? {}), [
        'id',
        'task',
        'status',
        'attempts',
        'replays',
        'key',
        'queue',
        'lastError',
        'createdAt',
        'updatedAt',
        'finishedAt',
      ]);
      assert.equal(run?.task, 'health.check');
      assert.equal(run?.status, 'succeeded');
      assert.equal(run?.queue, 'maintenance');

      const conversations = jsonLines((await runBackend(['whatsapp', 'conversations', '--json'], env)).stdout);
      assert.deepEqual(
        conversations.map((l) => [l.direction, l.waUser]),
        [
          ['out', '15550007777'],
          ['in', '15550007777'],
        ],
      );
      for (const line of conversations) {
        assert.deepEqual(Object.keys(line).sort(), [
          'accountId',
          'body',
          'createdAt',
          'direction',
          'error',
          'id',
          'status',
          'type',
          'waUser',
        ]);
      }
      const offline = jsonLines((await runBackend(['whatsapp', 'outbox', '--json'], env)).stdout);
      assert.equal(offline.length, 1);
      assert.equal(offline[0]?.status, 'offline');

      const accountId = conversations[0]?.accountId as number;
      const ledger = await runBackend(['credits', 'history', String(accountId), '--json'], env);
      assert.equal(ledger.code, 0, ledger.stderr);
      const entries = jsonLines(ledger.stdout);
      assert.ok(entries.length >= 1, ledger.stdout);
      assert.deepEqual(Object.keys(entries[0]!), [
        'id',
        'accountId',
        'kind',
        'amount',
        'balanceAfter',
        'key',
        'sourceRef',
        'createdAt',
      ]);
      assert.equal(entries[0]?.accountId, accountId);
      assert.equal(entries[0]?.balanceAfter, 5);

      const outbox = await runBackend(['outbox', 'list', '--json'], env);
      assert.equal(outbox.code, 0, outbox.stderr);
      for (const row of jsonLines(outbox.stdout)) assert.equal(typeof row.id, 'number');

      const queues = await runBackend(['queues', 'sync', '--dry-run', '--json'], env);
      assert.equal(queues.code, 0, queues.stderr);
      const changes = jsonLines(queues.stdout);
      assert.deepEqual(changes.map((c) => c.name).sort(), [...registry.queues.keys()].sort());
      for (const c of changes) {
        assert.deepEqual(Object.keys(c), ['kind', 'name', 'parent', 'action', 'dryRun', 'details']);
        assert.equal(c.kind, 'queue');
        assert.equal(c.dryRun, true);
        assert.equal(c.action, 'unchanged', 'the service synced them at start');
      }
      const jobs = jsonLines((await runBackend(['schedules', 'sync', '--dry-run', '--json'], env)).stdout);
      assert.deepEqual(
        jobs.map((j) => j.kind).filter((k) => k !== 'job'),
        [],
      );
      assert.ok(jobs.length >= registry.schedules.length);

      // A command's own time when the service answers it (Node's start aside).
      for (const args of [
        ['runs', 'list'],
        ['runs', 'list', '--json'],
        ['runs', 'show', String(run?.id)],
        ['outbox', 'list'],
        ['credits', 'history', String(accountId)],
        ['whatsapp', 'conversations'],
        ['whatsapp', 'outbox', '--json'],
      ]) {
        await measure(t, args, env);
      }
      // "help" is the message here, not a request for usage: still sent by (and to) the service,
      // whose port this terminal does not know.
      const help = await runBackend(['whatsapp', 'simulate', 'help', '--from', '15550007778'], env);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^sent wamid\.simulated-\S+ from 15550007778/);
    } finally {
      service.child.kill('SIGTERM');
      await service.exit;
      await db?.close();
    }
  });
});

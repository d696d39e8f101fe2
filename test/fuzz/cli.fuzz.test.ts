// Property-based fuzzing of the command line (runCli) with random argv: never an exception out of
// runCli, the exit code is 0, 1 or 2, and a command that fails (1) or is refused as bad usage (2)
// changes nothing. Commands that start servers or reach the network (serve, emulator, migrate on
// the environment's database, whatsapp simulate) are left out: they are tested as processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { CommandContext } from '../../src/cli/command-context.ts';
import { runCli } from '../../src/cli/main.ts';
import { createAccount } from '../../src/domains/credits/credits.service.ts';
import { registry } from '../../src/task-registry.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { fingerprint, nastyString, params } from './fuzz.ts';

const COMMANDS = [
  ['credits', 'grant'],
  ['credits', 'history'],
  ['runs', 'list'],
  ['runs', 'show'],
  ['runs', 'replay'],
  ['outbox', 'list'],
  ['outbox', 'resend'],
  ['outbox', 'drop'],
  ['whatsapp', 'conversations'],
  ['whatsapp', 'outbox'],
  ['enqueue'],
  ['queues', 'sync'],
  ['schedules', 'sync'],
  ['credits'],
  ['runs'],
  ['outbox'],
  [],
];
const OPTIONS = [
  '--reason',
  '--key',
  '--limit',
  '--status',
  '--task',
  '--parked',
  '--json',
  '--all',
  '--user',
  '--delay',
  '--dry-run',
  '--help',
  '-h',
  '--version',
  '-V',
  '--',
  '--unknown',
  '-x',
];

const token = fc.oneof(
  nastyString.filter((s) => s.isWellFormed()),
  fc.constantFrom(...OPTIONS),
  fc.constantFrom(
    '1',
    '2',
    '0',
    '-5',
    '15',
    '1e3',
    '99999999999999999999',
    'abc',
    '{}',
    '{"x":1}',
    'health.check',
    'dead',
    'succeeded',
    '30s',
    '31d',
  ),
  fc.nat().map(String),
);
const argv = fc.oneof(
  fc.tuple(fc.constantFrom(...COMMANDS), fc.array(token, { maxLength: 6 })).map(([c, rest]) => [...c, ...rest]),
  fc.array(token, { maxLength: 6 }),
);

describe(`fuzz: the command line (${testDbKind})`, () => {
  let t: TestApp;
  let ctx: CommandContext;
  before(async () => {
    t = await buildTestApp();
    for (let i = 0; i < 2; i++) await createAccount(t.db);
    ctx = {
      config: t.config,
      registry,
      clock: t.clock,
      out: () => {},
      db: async () => t.db,
      clients: () => {
        throw new Error('no task backend in this test');
      },
      enqueuer: () => {
        throw new Error('no task backend in this test');
      },
      close: async () => {},
    } as unknown as CommandContext;
  });
  after(async () => {
    await t.close();
  });

  test('runCli with random arguments: exit 0, 1 or 2, never a throw; a failure changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(argv, async (args) => {
        const before = await fingerprint(t.db);
        const lines: string[] = [];
        const io = { out: (s: string) => lines.push(s), err: (s: string) => lines.push(s) };
        const code = await runCli(args, { context: () => ctx, io, delegate: false });
        assert.ok([0, 1, 2].includes(code), `exit ${code} for ${JSON.stringify(args)}: ${lines.join('\n')}`);
        if (code !== 0) {
          assert.deepEqual(
            await fingerprint(t.db),
            before,
            `${JSON.stringify(args)} failed (${code}) and changed the database`,
          );
        }
      }),
      params(200),
    );
  });
});

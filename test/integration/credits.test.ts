// The credits ledger under every kind of duplicate and race, on PGlite and PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { CommandContext } from '../../src/cli/command-context.ts';
import { runCli } from '../../src/cli/main.ts';
import type { Queryable } from '../../src/db/db.ts';
import {
  adjust,
  balanceOf,
  charge,
  createAccount,
  grantSignup,
  history,
  InsufficientCreditsError,
  refund,
  release,
  reserve,
  settle,
  topUp,
  UnknownAccountError,
} from '../../src/domains/credits/credits.service.ts';
import { registry } from '../../src/task-registry.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

/** The invariant: the cached balance equals the ledger's sum, and is never negative. */
export async function assertConsistent(db: Queryable, accountId: number): Promise<number> {
  const { rows } = await db.query<{ balance: number; total: number | string | null; negative: number }>(
    `SELECT a.balance,
            (SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE account_id = a.id) AS total,
            (SELECT COUNT(*) FROM credit_ledger WHERE account_id = a.id AND balance_after < 0) AS negative
       FROM accounts a WHERE a.id = $1`,
    [accountId],
  );
  const row = rows[0]!;
  assert.equal(Number(row.total), Number(row.balance), 'balance = sum(ledger)');
  assert.ok(Number(row.balance) >= 0, 'balance ≥ 0');
  assert.equal(Number(row.negative), 0, 'no entry left a negative balance');
  return Number(row.balance);
}

const ledgerCount = async (db: Queryable, accountId: number) =>
  Number(
    (await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM credit_ledger WHERE account_id = $1', [accountId]))
      .rows[0]!.n,
  );

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe(`credits ledger (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp();
  });
  after(() => t.close());

  test('20 concurrent deliveries of one top-up: one ledger entry, the balance raised once', async () => {
    const accountId = await createAccount(t.db);
    const payload = { accountId, credits: 25, paymentIntentId: 'pi_test_1' };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => push(t.app, t.issuer, 'credits.topup', payload, { taskName: `d${i}` })),
    );
    for (const r of results) assert.ok([200, 409].includes(r.status), `${r.status} ${JSON.stringify(r.body)}`);
    assert.ok(results.some((r) => r.outcome === 'succeeded'));
    // Whatever was busy is redelivered by Cloud Tasks: it finds the run done.
    const again = await push(t.app, t.issuer, 'credits.topup', payload, { taskName: 'late' });
    assert.equal(again.outcome, 'duplicate');
    assert.equal(await balanceOf(t.db, accountId), 25);
    const { rows } = await t.db.query<{ idempotency_key: string; kind: string }>(
      'SELECT idempotency_key, kind FROM credit_ledger WHERE account_id = $1',
      [accountId],
    );
    assert.deepEqual(rows, [{ idempotency_key: 'stripe:pi:pi_test_1', kind: 'topup' }]);
    await assertConsistent(t.db, accountId);
  });

  test('the same top-up applied directly twice (beneath the task claim) still credits once', async () => {
    const accountId = await createAccount(t.db);
    const input = { accountId, credits: 7, key: 'stripe:cs:cs_direct', sourceRef: 'cs_direct' };
    const [a, b] = await Promise.all([topUp(t.db, input), topUp(t.db, input)]);
    assert.deepEqual([a.applied, b.applied].sort(), [false, true]);
    assert.equal(await balanceOf(t.db, accountId), 7);
    await assertConsistent(t.db, accountId);
  });

  test('a top-up for an unknown account is a dead run and changes nothing', async () => {
    const r = await push(t.app, t.issuer, 'credits.topup', {
      accountId: 999_999,
      credits: 5,
      checkoutSessionId: 'cs_x',
    });
    assert.equal(r.outcome, 'dead');
    const n = await t.db.query("SELECT 1 FROM credit_ledger WHERE idempotency_key = 'stripe:cs:cs_x'");
    assert.equal(n.rowCount, 0);
  });

  test('100 concurrent different charges against a balance covering 60: exactly 60 succeed, balance 0', async () => {
    const accountId = await createAccount(t.db);
    await adjust(t.db, { accountId, amount: 60, reason: 'test float', key: 'float-60' });
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, (_, i) => charge(t.db, { accountId, credits: 1, ref: `req-${i}` })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(ok.length, 60);
    assert.equal(refused.length, 40);
    for (const r of refused) assert.ok(r.reason instanceof InsufficientCreditsError, String(r.reason));
    assert.equal(await balanceOf(t.db, accountId), 0);
    assert.equal(await ledgerCount(t.db, accountId), 61);
    assert.equal(await assertConsistent(t.db, accountId), 0);
  });

  test('a refused charge changes nothing, and a repeat of an applied charge is a duplicate, not a refusal', async () => {
    const accountId = await createAccount(t.db);
    await grantSignup(t.db, accountId, 3);
    await grantSignup(t.db, accountId, 3); // once per account
    assert.equal(await balanceOf(t.db, accountId), 3);
    const first = await charge(t.db, { accountId, credits: 3, ref: 'post-1' });
    assert.equal(first.applied, true);
    const repeat = await charge(t.db, { accountId, credits: 3, ref: 'post-1' });
    assert.equal(repeat.applied, false);
    await assert.rejects(charge(t.db, { accountId, credits: 1, ref: 'post-2' }), InsufficientCreditsError);
    await assert.rejects(charge(t.db, { accountId: 987_654, credits: 1, ref: 'x' }), UnknownAccountError);
    assert.equal(await ledgerCount(t.db, accountId), 2);
    assert.equal(await assertConsistent(t.db, accountId), 0);
  });

  test('reserve, then settle or release: once each, and never both', async () => {
    const accountId = await createAccount(t.db);
    await adjust(t.db, { accountId, amount: 10, reason: 'float', key: 'float-10' });
    assert.equal((await reserve(t.db, { accountId, credits: 4, ref: 'blog-1' })).balance, 6);
    assert.equal((await reserve(t.db, { accountId, credits: 4, ref: 'blog-1' })).applied, false);
    assert.deepEqual(await settle(t.db, 'blog-1', 3), { closed: true, refunded: 1 });
    assert.deepEqual(await release(t.db, 'blog-1'), { closed: false, refunded: 0 });
    assert.equal(await balanceOf(t.db, accountId), 7);
    await reserve(t.db, { accountId, credits: 5, ref: 'blog-2' });
    assert.equal(await balanceOf(t.db, accountId), 2);
    const [r1, r2] = await Promise.all([release(t.db, 'blog-2'), release(t.db, 'blog-2')]);
    assert.deepEqual([r1.refunded, r2.refunded].sort(), [0, 5]);
    assert.deepEqual(await settle(t.db, 'blog-2'), { closed: false, refunded: 0 });
    assert.equal(await balanceOf(t.db, accountId), 7);
    await assert.rejects(reserve(t.db, { accountId, credits: 8, ref: 'blog-3' }), InsufficientCreditsError);
    assert.equal((await t.db.query("SELECT 1 FROM credit_holds WHERE ref = 'blog-3'")).rowCount, 0);
    await assertConsistent(t.db, accountId);
  });

  test('property: random top-ups, charges, refunds and duplicates keep balance = sum(ledger) ≥ 0', async () => {
    for (const seed of [1, 7, 42, 2026]) {
      const random = prng(seed);
      const accountId = await createAccount(t.db);
      const done: Array<() => Promise<unknown>> = [];
      const ops: Array<() => Promise<unknown>> = [];
      for (let i = 0; i < 60; i++) {
        const r = random();
        const credits = 1 + Math.floor(random() * 20);
        let op: () => Promise<unknown>;
        if (r < 0.3)
          op = () => topUp(t.db, { accountId, credits, key: `stripe:pi:${seed}-${i}`, sourceRef: `pi_${i}` });
        else if (r < 0.7) op = () => charge(t.db, { accountId, credits, ref: `${seed}-c${i}` });
        else if (r < 0.85) op = () => refund(t.db, { accountId, credits, ref: `${seed}-r${i}` });
        else {
          // A duplicate delivery of something already issued (or about to be).
          const pick = done[Math.floor(random() * done.length)];
          op = pick ?? (() => Promise.resolve());
        }
        ops.push(op);
        done.push(op);
      }
      // Interleave: fire in random-sized concurrent waves.
      let i = 0;
      while (i < ops.length) {
        const wave = ops.slice(i, i + 1 + Math.floor(random() * 8));
        i += wave.length;
        const results = await Promise.allSettled(wave.map((op) => op()));
        for (const r of results) {
          if (r.status === 'rejected')
            assert.ok(r.reason instanceof InsufficientCreditsError, `seed ${seed}: ${r.reason}`);
        }
        await assertConsistent(t.db, accountId);
      }
      const keys = await t.db.query<{ n: number; d: number }>(
        'SELECT COUNT(*) AS n, COUNT(DISTINCT idempotency_key) AS d FROM credit_ledger WHERE account_id = $1',
        [accountId],
      );
      assert.equal(Number(keys.rows[0]!.n), Number(keys.rows[0]!.d), `seed ${seed}: one entry per key`);
    }
  });

  test('backend credits grant and history: adjustments with the reason; bad input is exit 2', async () => {
    const accountId = await createAccount(t.db);
    const lines: string[] = [];
    const ctx = {
      config: t.config,
      registry,
      clock: t.clock,
      out: (s: string) => lines.push(s),
      db: async () => t.db,
      clients: () => {
        throw new Error('not used');
      },
      enqueuer: () => {
        throw new Error('not used');
      },
      close: async () => {},
    } as unknown as CommandContext;
    const io = { out: (s: string) => lines.push(s), err: (s: string) => lines.push(`ERR ${s}`) };
    const run = (argv: string[]) => runCli(argv, { context: () => ctx, io, delegate: false });
    assert.equal(await run(['credits', 'grant', String(accountId), '15', '--reason', 'goodwill', '--key', 'k1']), 0);
    assert.equal(await run(['credits', 'grant', String(accountId), '15', '--reason', 'goodwill', '--key', 'k1']), 0);
    assert.match(lines.join('\n'), /already applied/);
    assert.equal(await run(['credits', 'grant', '--reason', 'too much', '--', String(accountId), '-20']), 1);
    assert.equal(await run(['credits', 'grant', String(accountId), '0', '--reason', 'x']), 2);
    assert.equal(await run(['credits', 'grant', String(accountId), '5']), 2);
    assert.equal(await run(['credits', 'grant', 'abc', '5', '--reason', 'x']), 2);
    assert.equal(await balanceOf(t.db, accountId), 15);
    lines.length = 0;
    assert.equal(await run(['credits', 'history', String(accountId)]), 0);
    const out = lines.join('\n');
    assert.match(out, new RegExp(`account ${accountId}: balance 15`));
    assert.match(out, /adjustment\s+\+15\s+15\s+adj:k1 {2}\(goodwill\)/);
    const entries = await history(t.db, accountId);
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.sourceRef, 'goodwill');
    assert.equal(await run(['credits', 'history', '999999']), 1);
    await assertConsistent(t.db, accountId);
  });
});

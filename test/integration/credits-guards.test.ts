// The credits service's guards, each through its public functions on a real database: bad amounts
// and bad `used` values are refused with a RangeError and write nothing; a ledger key reused for
// another movement is refused; refunds, holds (settled in part, in full, over, or never made) and
// adjustments write exactly the entry they name. The concurrency of the ledger is credits.test.ts's.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Queryable } from '../../src/db/db.ts';
import {
  adjust,
  balanceOf,
  charge,
  createAccount,
  history,
  InsufficientCreditsError,
  inTransaction,
  move,
  refund,
  release,
  reserve,
  settle,
  topUp,
  UnknownAccountError,
} from '../../src/domains/credits/credits.service.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

let db: TestDb;
before(async () => {
  db = await createTestDb();
});
after(() => db.close());

/** Everything the ledger and the holds hold for an account: what "changes nothing" compares. */
async function snapshot(q: Queryable, accountId: number) {
  const ledger = await q.query('SELECT * FROM credit_ledger WHERE account_id = $1 ORDER BY id', [accountId]);
  const holds = await q.query('SELECT * FROM credit_holds WHERE account_id = $1 ORDER BY ref', [accountId]);
  return { balance: await balanceOf(q, accountId), ledger: ledger.rows, holds: holds.rows };
}

const holdRow = async (ref: string) =>
  (await db.query<{ state: string; amount: number }>('SELECT state, amount FROM credit_holds WHERE ref = $1', [ref]))
    .rows[0];

/** An account holding `credits`, through a top-up. */
async function funded(credits: number): Promise<number> {
  const accountId = await createAccount(db);
  await topUp(db, { accountId, credits, key: `stripe:pi:fund-${accountId}`, sourceRef: `pi_fund_${accountId}` });
  return accountId;
}

const at = new Date('2026-03-04T05:06:07.000Z');

describe(`credits service guards (${testDbKind})`, () => {
  test('move refuses a zero, fractional, non-finite or unsafe amount, and writes nothing', async () => {
    const accountId = await funded(10);
    const before = await snapshot(db, accountId);
    for (const amount of [0, -0, 1.5, -0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53)]) {
      await assert.rejects(
        move(db, { accountId, amount, kind: 'adjustment', key: `bad-${amount}` }),
        (err: Error) =>
          err instanceof RangeError && err.message === `credits: amount must be a non-zero integer, got ${amount}`,
        String(amount),
      );
    }
    assert.deepEqual(await snapshot(db, accountId), before);
    // The largest safe amounts pass the check (the debit is then refused for the balance).
    await assert.rejects(
      move(db, { accountId, amount: -(2 ** 53 - 1), kind: 'adjustment', key: 'big-debit' }),
      InsufficientCreditsError,
    );
    const ok = await move(db, { accountId, amount: -1, kind: 'adjustment', key: 'one-debit' });
    assert.deepEqual([ok.applied, ok.balance], [true, 9]);
  });

  test('a balance past the safe integer range is refused and writes nothing; a repeat of an applied key is still a duplicate', async () => {
    const accountId = await funded(Number.MAX_SAFE_INTEGER - 10);
    const before = await snapshot(db, accountId);
    await assert.rejects(
      topUp(db, { accountId, credits: 11, key: 'stripe:pi:past-max', sourceRef: 'pi_past_max' }),
      (err: Error) =>
        err instanceof RangeError &&
        err.message === `credits: account ${accountId}'s balance would pass ${Number.MAX_SAFE_INTEGER}`,
    );
    assert.deepEqual(await snapshot(db, accountId), before);
    const last = await topUp(db, { accountId, credits: 10, key: 'stripe:pi:to-max', sourceRef: 'pi_to_max' });
    assert.deepEqual([last.applied, last.balance], [true, Number.MAX_SAFE_INTEGER]);
    const again = await topUp(db, { accountId, credits: 10, key: 'stripe:pi:to-max', sourceRef: 'pi_to_max' });
    assert.equal(again.applied, false);
    assert.equal(await balanceOf(db, accountId), Number.MAX_SAFE_INTEGER);
  });

  test('bad input is a rejected promise, never a synchronous throw, so a caller without await still sees it', async () => {
    const accountId = await funded(10);
    const calls: [string, () => Promise<unknown>][] = [
      ['topUp', () => topUp(db, { accountId, credits: 0, key: 'k-top', sourceRef: 'pi_x' })],
      ['charge', () => charge(db, { accountId, credits: -1, ref: 'k-charge' })],
      ['refund', () => refund(db, { accountId, credits: 1.5, ref: 'k-refund' })],
      ['reserve', () => reserve(db, { accountId, credits: 0, ref: 'k-reserve' })],
      ['settle', () => settle(db, 'no-such-hold', -1)],
      ['adjust', () => adjust(db, { accountId, amount: 1, reason: ' ', key: 'k-adjust' })],
    ];
    for (const [name, call] of calls) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        promise = call();
      }, name);
      await assert.rejects(promise as Promise<unknown>, RangeError, name);
    }
  });

  test('charge, refund and reserve refuse credits that are not a positive safe integer, and write nothing', async () => {
    const accountId = await funded(10);
    const before = await snapshot(db, accountId);
    const calls: Array<[string, (credits: number) => Promise<unknown>]> = [
      ['charge', (credits) => charge(db, { accountId, credits, ref: `c-${credits}` })],
      ['refund', (credits) => refund(db, { accountId, credits, ref: `r-${credits}` })],
      ['reservation', (credits) => reserve(db, { accountId, credits, ref: `h-${credits}` })],
    ];
    for (const [what, call] of calls) {
      for (const credits of [0, -3, 2.5, Number.NaN, 2 ** 53]) {
        // charge, refund and topUp check before any await, so they throw rather than reject: either is a refusal.
        await assert.rejects(
          async () => call(credits),
          (err: Error) =>
            err instanceof RangeError && err.message === `credits: ${what} must be a positive integer, got ${credits}`,
          `${what} ${credits}`,
        );
      }
    }
    assert.deepEqual(await snapshot(db, accountId), before);
  });

  test('a debit the balance cannot cover is refused with the balance and the amount needed', async () => {
    const accountId = await funded(2);
    const err = await charge(db, { accountId, credits: 5, ref: 'too-much' }).catch((e: unknown) => e);
    assert.ok(err instanceof InsufficientCreditsError);
    assert.equal(err.balance, 2);
    assert.equal(err.needed, 5);
    assert.equal(err.message, `account ${accountId} has 2 credits; 5 needed`);
    // Exactly the balance is covered.
    const all = await charge(db, { accountId, credits: 2, ref: 'exactly' });
    assert.deepEqual([all.applied, all.balance], [true, 0]);
    const unknown = await charge(db, { accountId: 987_654_321, credits: 1, ref: 'nobody' }).catch((e: unknown) => e);
    assert.ok(unknown instanceof UnknownAccountError);
    assert.equal(unknown.accountId, 987_654_321);
    assert.equal(unknown.message, 'no account 987654321');
  });

  test('charge and refund write the entry they name; a repeated refund is a duplicate', async () => {
    const accountId = await funded(10);
    const charged = await charge(db, { accountId, credits: 4, ref: 'req-1', at });
    assert.deepEqual([charged.applied, charged.balance], [true, 6]);
    const refunded = await refund(db, { accountId, credits: 3, ref: 'req-1', at });
    assert.deepEqual([refunded.applied, refunded.balance], [true, 9]);
    const again = await refund(db, { accountId, credits: 3, ref: 'req-1' });
    assert.deepEqual(again, { applied: false, entryId: refunded.entryId, balance: 9 });
    const [r, c] = await history(db, accountId, 2);
    assert.deepEqual(
      [r, c].map((e) => [e!.id, e!.kind, e!.amount, e!.idempotencyKey, e!.sourceRef, e!.balanceAfter, e!.createdAt]),
      [
        [refunded.entryId, 'refund', 3, 'refund:req-1', 'req-1', 9, at],
        [charged.entryId, 'charge', -4, 'charge:req-1', 'req-1', 6, at],
      ],
    );
    assert.equal(await balanceOf(db, accountId), 9);
  });

  test('a ledger key reused for another amount, account or kind is refused, and changes nothing', async () => {
    const a = await funded(10);
    const b = await funded(10);
    const first = await topUp(db, { accountId: a, credits: 5, key: 'stripe:pi:reused', sourceRef: 'pi_reused' });
    assert.equal(first.applied, true);
    const before = [await snapshot(db, a), await snapshot(db, b)];
    await assert.rejects(topUp(db, { accountId: a, credits: 6, key: 'stripe:pi:reused', sourceRef: 'pi_reused' }), {
      message: `credits: key stripe:pi:reused was used for topup 5 on account ${a}, not topup 6 on account ${a}`,
    });
    await assert.rejects(topUp(db, { accountId: b, credits: 5, key: 'stripe:pi:reused', sourceRef: 'pi_reused' }), {
      message: `credits: key stripe:pi:reused was used for topup 5 on account ${a}, not topup 5 on account ${b}`,
    });
    await assert.rejects(move(db, { accountId: a, amount: 5, kind: 'refund', key: 'stripe:pi:reused' }), {
      message: `credits: key stripe:pi:reused was used for topup 5 on account ${a}, not refund 5 on account ${a}`,
    });
    // A debit's key reused when the balance could not cover the new amount: refused for the key too.
    await charge(db, { accountId: a, credits: 15, ref: 'drain' });
    await assert.rejects(charge(db, { accountId: a, credits: 16, ref: 'drain' }), {
      message: `credits: key charge:drain was used for charge -15 on account ${a}, not charge -16 on account ${a}`,
    });
    const drained = await snapshot(db, a);
    assert.equal(drained.balance, 0);
    assert.deepEqual(drained.ledger.slice(0, -1), before[0]!.ledger);
    assert.deepEqual(await snapshot(db, b), before[1]);
    // The same movement again is a duplicate: the first entry, the balance as it is now.
    const same = await topUp(db, { accountId: a, credits: 5, key: 'stripe:pi:reused', sourceRef: 'pi_reused' });
    assert.deepEqual(same, { applied: false, entryId: first.entryId, balance: 0 });
  });

  test('settle keeps what was used and refunds the rest; all, none, or more than reserved refunds nothing', async () => {
    const accountId = await funded(20);
    for (const ref of ['part', 'all', 'over', 'default', 'zero']) await reserve(db, { accountId, credits: 4, ref });
    assert.equal(await balanceOf(db, accountId), 0);
    assert.deepEqual(await settle(db, 'part', 1, at), { closed: true, refunded: 3 });
    assert.deepEqual(await settle(db, 'all', 4), { closed: true, refunded: 0 });
    assert.deepEqual(await settle(db, 'over', 9), { closed: true, refunded: 0 });
    assert.deepEqual(await settle(db, 'default'), { closed: true, refunded: 0 });
    assert.deepEqual(await settle(db, 'zero', 0), { closed: true, refunded: 4 });
    assert.equal(await balanceOf(db, accountId), 7);
    for (const ref of ['part', 'all', 'over', 'default', 'zero']) assert.equal((await holdRow(ref))?.state, 'settled');
    const refunds = (await history(db, accountId)).filter((e) => e.kind === 'refund');
    assert.deepEqual(
      refunds.map((e) => [e.amount, e.idempotencyKey, e.sourceRef]),
      [
        [4, 'settled:zero', 'zero'],
        [3, 'settled:part', 'part'],
      ],
    );
    assert.deepEqual(refunds[1]!.createdAt, at);
  });

  test('settle refuses a negative, fractional or unsafe `used`, and the hold stays held', async () => {
    const accountId = await funded(5);
    await reserve(db, { accountId, credits: 5, ref: 'bad-used' });
    const before = await snapshot(db, accountId);
    for (const used of [-1, 1.5, Number.NaN, 2 ** 53]) {
      await assert.rejects(
        settle(db, 'bad-used', used),
        (err: Error) =>
          err instanceof RangeError && err.message === `credits: used must be a non-negative integer, got ${used}`,
        String(used),
      );
    }
    assert.deepEqual(await snapshot(db, accountId), before);
    assert.equal((await holdRow('bad-used'))?.state, 'held');
  });

  test('reserve records the hold once; release gives it all back under its own key', async () => {
    const accountId = await funded(6);
    const held = await reserve(db, { accountId, credits: 6, ref: 'job-1', at });
    assert.deepEqual([held.applied, held.balance], [true, 0]);
    assert.deepEqual(await reserve(db, { accountId, credits: 6, ref: 'job-1' }), {
      applied: false,
      entryId: held.entryId,
      balance: 0,
    });
    assert.deepEqual(await holdRow('job-1'), { state: 'held', amount: 6 });
    const [entry] = await history(db, accountId, 1);
    assert.deepEqual(
      [entry!.id, entry!.kind, entry!.amount, entry!.idempotencyKey, entry!.sourceRef, entry!.createdAt],
      [held.entryId, 'charge', -6, 'hold:job-1', 'job-1', at],
    );
    assert.deepEqual(await release(db, 'job-1'), { closed: true, refunded: 6 });
    assert.equal((await holdRow('job-1'))?.state, 'released');
    const [back] = await history(db, accountId, 1);
    assert.deepEqual([back!.kind, back!.amount, back!.idempotencyKey], ['refund', 6, 'released:job-1']);
    assert.equal(await balanceOf(db, accountId), 6);
  });

  test('settling or releasing a reference that was never reserved changes nothing', async () => {
    const accountId = await funded(3);
    const before = await snapshot(db, accountId);
    assert.deepEqual(await settle(db, 'never-reserved', 1), { closed: false, refunded: 0 });
    assert.deepEqual(await release(db, 'never-reserved'), { closed: false, refunded: 0 });
    assert.equal(await holdRow('never-reserved'), undefined);
    assert.deepEqual(await snapshot(db, accountId), before);
  });

  test('adjust: a blank reason is refused; the reason is trimmed, the key namespaced, none means a new key', async () => {
    const accountId = await funded(1);
    const before = await snapshot(db, accountId);
    for (const reason of ['', '   ', '\n\t']) {
      await assert.rejects(async () => adjust(db, { accountId, amount: 5, reason, key: 'blank' }), {
        name: 'RangeError',
        message: 'credits: an adjustment needs a reason',
      });
    }
    assert.deepEqual(await snapshot(db, accountId), before);
    const keyed = await adjust(db, { accountId, amount: -1, reason: '  correction  ', key: 'k-1', at });
    assert.equal((await adjust(db, { accountId, amount: -1, reason: 'correction', key: 'k-1' })).applied, false);
    const [entry] = await history(db, accountId, 1);
    assert.deepEqual(
      [entry!.id, entry!.kind, entry!.amount, entry!.idempotencyKey, entry!.sourceRef, entry!.createdAt],
      [keyed.entryId, 'adjustment', -1, 'adj:k-1', 'correction', at],
    );
    const one = await adjust(db, { accountId, amount: 2, reason: 'goodwill' });
    const two = await adjust(db, { accountId, amount: 2, reason: 'goodwill' });
    assert.deepEqual([one.applied, two.applied], [true, true]);
    const keys = (await history(db, accountId, 2)).map((e) => e.idempotencyKey);
    assert.ok(keys.every((k) => /^adj:[0-9a-f-]{36}$/.test(k)) && keys[0] !== keys[1], keys.join());
    assert.equal(await balanceOf(db, accountId), 4);
  });

  test('inside a caller’s transaction the movement is the caller’s: rolled back with it', async () => {
    const accountId = await funded(5);
    const before = await snapshot(db, accountId);
    await assert.rejects(
      db.transaction(async (tx) => {
        await charge(tx, { accountId, credits: 2, ref: 'in-tx' });
        await reserve(tx, { accountId, credits: 1, ref: 'in-tx' });
        assert.equal(await balanceOf(tx, accountId), 2);
        throw new Error('the caller fails after charging');
      }),
      /the caller fails after charging/,
    );
    assert.deepEqual(await snapshot(db, accountId), before);
    // Neither a Db nor a transaction (a bare query function): refused before anything runs.
    const bare: Queryable = { query: (text, values) => db.query(text, values), exec: (s) => db.exec(s) };
    await assert.rejects(charge(bare, { accountId, credits: 1, ref: 'bare' }), {
      message: 'credits: a Db or a transaction is required',
    });
    await assert.rejects(
      inTransaction(bare, async () => 'ran'),
      { message: 'credits: a Db or a transaction is required' },
    );
    assert.deepEqual(await snapshot(db, accountId), before);
  });
});

// credits.monthly_grant: once per account and month, in batches, resumable after dying halfway.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { balanceOf, createAccount } from '../../src/domains/credits/credits.service.ts';
import type { MonthlyGrantSettings } from '../../src/domains/credits/monthly-grant.task.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

const scheduled = (time: string, retryCount = 0) => ({
  retryCount,
  headers: {
    'x-cloudscheduler': 'true',
    'x-cloudscheduler-jobname': 'backend-monthly-grant',
    'x-cloudscheduler-scheduletime': time,
  },
});

describe(`credits.monthly_grant (${testDbKind})`, () => {
  let t: TestApp;
  const settings: MonthlyGrantSettings = { batchSize: 4 };
  before(async () => {
    t = await buildTestApp({ services: { monthlyGrant: settings } });
  });
  after(() => t.close());

  test('killed after its first batch and run again, it grants every plan account exactly once', async () => {
    const onPlan: number[] = [];
    for (let i = 0; i < 10; i++) onPlan.push(await createAccount(t.db, { plan: 'basic', monthlyCredits: 100 + i }));
    const noPlan = await createAccount(t.db);
    const zero = await createAccount(t.db, { plan: 'free', monthlyCredits: 0 });

    // The first delivery dies after committing one batch (an instance killed mid-run).
    let batches = 0;
    settings.afterBatch = () => {
      batches++;
      throw new Error('instance killed');
    };
    const first = await push(t.app, t.issuer, 'credits.monthly_grant', {}, scheduled('2026-04-01T00:00:00Z'));
    assert.equal(first.outcome, 'retry', JSON.stringify(first.body));
    assert.equal(batches, 1);
    const granted = async () =>
      Number(
        (await t.db.query<{ n: number }>("SELECT COUNT(*) AS n FROM credit_ledger WHERE kind = 'monthly_grant'"))
          .rows[0]!.n,
      );
    assert.equal(await granted(), 4, 'the first batch committed');

    // Cloud Scheduler's retry: same schedule time, same run; it resumes and finishes.
    settings.afterBatch = undefined;
    const second = await push(t.app, t.issuer, 'credits.monthly_grant', {}, scheduled('2026-04-01T00:00:00Z', 1));
    assert.equal(second.outcome, 'succeeded', JSON.stringify(second.body));
    assert.equal(await granted(), 10);
    for (const [i, id] of onPlan.entries()) assert.equal(await balanceOf(t.db, id), 100 + i);
    assert.equal(await balanceOf(t.db, noPlan), 0);
    assert.equal(await balanceOf(t.db, zero), 0);

    // A late duplicate of the run, and a manual run for the same month, change nothing.
    const dup = await push(t.app, t.issuer, 'credits.monthly_grant', {}, scheduled('2026-04-01T00:00:00Z', 2));
    assert.equal(dup.outcome, 'duplicate');
    const manual = await push(t.app, t.issuer, 'credits.monthly_grant', { month: '2026-04' }, { taskName: 'manual' });
    assert.equal(manual.outcome, 'succeeded', JSON.stringify(manual.body));
    assert.equal(await granted(), 10);

    // Next month grants again, once.
    const may = await push(t.app, t.issuer, 'credits.monthly_grant', {}, scheduled('2026-05-01T00:00:00Z'));
    assert.equal(may.outcome, 'succeeded');
    assert.equal(await granted(), 20);
    assert.equal(await balanceOf(t.db, onPlan[0]!), 200);
    const { rows } = await t.db.query<{ idempotency_key: string }>(
      'SELECT idempotency_key FROM credit_ledger WHERE account_id = $1 ORDER BY id',
      [onPlan[0]],
    );
    assert.deepEqual(
      rows.map((r) => r.idempotency_key),
      [`grant:monthly:${onPlan[0]}:2026-04`, `grant:monthly:${onPlan[0]}:2026-05`],
    );
  });
});

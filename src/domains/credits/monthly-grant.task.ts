// credits.monthly_grant (scheduled 00:00 UTC on the 1st): grants every account on a plan its
// monthly credits, once per account and month. Each batch of accounts commits in its own
// transaction, and each grant's ledger key is `grant:monthly:{account}:{YYYY-MM}`, so a run that
// dies halfway is simply run again (Cloud Tasks retries it): accounts granted before the crash are
// duplicates that change nothing, the rest are granted.
import { z } from 'zod';
import type { Queryable } from '../../db/db.ts';
import { defineTask } from '../../tasks/define-task.ts';
import { accounts } from './credits.repository.ts';
import { grantMonthly, inTransaction } from './credits.service.ts';

export interface MonthlyGrantSettings {
  /** Accounts per transaction. (Default: 500) */
  batchSize: number;
  /** Called after each committed batch (tests use it to kill a run halfway). */
  afterBatch?: (batch: { month: string; accounts: number; granted: number }) => void | Promise<void>;
}

declare module '../../tasks/define-task.ts' {
  interface TaskServices {
    monthlyGrant: MonthlyGrantSettings;
  }
}

const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;

/** The calendar month (UTC) of a time, as YYYY-MM. */
export const monthOf = (d: Date) => d.toISOString().slice(0, 7);

export const monthlyGrantTask = defineTask({
  name: 'credits.monthly_grant',
  queue: 'credits',
  payload: z.object({ month: z.string().regex(MONTH, { error: 'expected YYYY-MM' }).optional() }).strict(),
  // A scheduled run: one per month (the schedule time is constant across retries). A run enqueued
  // by hand (`backend enqueue credits.monthly_grant '{"month":"2026-04"}'`) is its own run, keyed
  // by the enqueuer, and grants only the accounts the month's grant missed: the ledger keys are
  // per account and month, whichever run writes them.
  idempotencyKey: (payload, delivery) =>
    payload.month === undefined && delivery.scheduleTime ? `monthly:${monthOf(delivery.scheduleTime)}` : undefined,
  deadlineSeconds: 600,
  async handler(ctx) {
    const month = ctx.payload.month ?? monthOf(ctx.delivery.scheduleTime ?? new Date(ctx.clock.now()));
    const { batchSize, afterBatch } = ctx.services.monthlyGrant;
    let cursor = 0;
    let accounts = 0;
    let granted = 0;
    for (;;) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const batch = await inTransaction(ctx.db, (tx) => grantBatch(tx, month, cursor, batchSize, ctx.clock.now()));
      accounts += batch.accounts;
      granted += batch.granted;
      if (batch.accounts === 0) break;
      cursor = batch.lastId;
      await afterBatch?.({ month, accounts, granted });
      if (batch.accounts < batchSize) break;
    }
    ctx.log.info({ month, accounts, granted }, `monthly grant ${month}: ${granted} of ${accounts} accounts granted`);
    return { month, accounts, granted };
  },
});

async function grantBatch(tx: Queryable, month: string, cursor: number, limit: number, nowMs: number) {
  const batch = await accounts.onPlanAfter(tx, cursor, limit);
  let granted = 0;
  for (const a of batch) {
    const m = await grantMonthly(tx, {
      accountId: a.id,
      credits: a.monthlyCredits,
      month,
      plan: a.plan,
      at: new Date(nowMs),
    });
    if (m.applied) granted++;
  }
  return { accounts: batch.length, granted, lastId: batch.length ? batch.at(-1)!.id : cursor };
}

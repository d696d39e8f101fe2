// The credits tables: accounts, credit_ledger, credit_holds, and the Stripe bookkeeping
// (stripe_events, stripe_payments, stripe_clawbacks, stripe_unmatched_payments). Every movement
// follows one pattern (credits.service.ts): lock the account row, insert the ledger row ON CONFLICT
// DO NOTHING, and move the cached balance only when that insert returned a row, all in the
// caller's transaction.
import type { Queryable } from '../../db/db.ts';

export type LedgerKind =
  | 'signup_grant'
  | 'monthly_grant'
  | 'topup'
  | 'charge'
  | 'refund'
  | 'adjustment'
  // Credits following money back to the customer (stripe-money.ts): a refund, a dispute, a won dispute.
  | 'refund_clawback'
  | 'dispute_clawback'
  | 'dispute_reversal';

export interface LedgerEntry {
  id: number;
  accountId: number;
  amount: number;
  kind: LedgerKind;
  idempotencyKey: string;
  sourceRef: string | null;
  balanceAfter: number;
  createdAt: Date;
}

interface EntryRow {
  id: number;
  account_id: number;
  amount: number;
  kind: LedgerKind;
  idempotency_key: string;
  source_ref: string | null;
  balance_after: number;
  created_at: Date;
}

const toEntry = (r: EntryRow): LedgerEntry => ({
  id: Number(r.id),
  accountId: Number(r.account_id),
  amount: Number(r.amount),
  kind: r.kind,
  idempotencyKey: r.idempotency_key,
  sourceRef: r.source_ref,
  balanceAfter: Number(r.balance_after),
  createdAt: new Date(r.created_at),
});

const INSERT_ACCOUNT = `
  INSERT INTO accounts (plan, monthly_credits, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id`;

const LOCK_ACCOUNT = 'SELECT id, balance FROM accounts WHERE id = $1 FOR UPDATE';

const SELECT_BALANCE = 'SELECT balance FROM accounts WHERE id = $1';

const UPDATE_BALANCE = 'UPDATE accounts SET balance = balance + $2, updated_at = $3 WHERE id = $1';

const SELECT_PLAN_ACCOUNTS = `
  SELECT id, plan, monthly_credits FROM accounts
   WHERE plan IS NOT NULL AND monthly_credits > 0 AND id > $1
   ORDER BY id LIMIT $2`;

const INSERT_LEDGER_ENTRY = `
  INSERT INTO credit_ledger (account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id`;

const SELECT_ENTRY_BY_KEY = `
  SELECT id, account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at
    FROM credit_ledger WHERE idempotency_key = $1`;

const SELECT_HISTORY = `
  SELECT id, account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at
    FROM credit_ledger WHERE account_id = $1 ORDER BY id DESC LIMIT $2`;

const INSERT_HOLD = `
  INSERT INTO credit_holds (ref, account_id, amount, state, created_at, updated_at)
  VALUES ($1, $2, $3, 'held', $4, $4)
  ON CONFLICT (ref) DO NOTHING
  RETURNING ref`;

const SELECT_HOLD = 'SELECT ref, account_id, amount, state FROM credit_holds WHERE ref = $1';

const CLOSE_HOLD = `
  UPDATE credit_holds SET state = $2, updated_at = $3 WHERE ref = $1 AND state = 'held' RETURNING amount`;

const INSERT_STRIPE_EVENT = `
  INSERT INTO stripe_events (event_id, type, livemode, received_at) VALUES ($1, $2, $3, $4)
  ON CONFLICT (event_id) DO NOTHING
  RETURNING event_id`;

const SELECT_STRIPE_EVENT = 'SELECT 1 FROM stripe_events WHERE event_id = $1';

const MARK_STRIPE_EVENT_PROCESSED = 'UPDATE stripe_events SET processed_at = $2 WHERE event_id = $1';

const INSERT_UNMATCHED_PAYMENT = `
  INSERT INTO stripe_unmatched_payments (event_id, object_id, client_reference_id, reason, payload, created_at)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (event_id) DO NOTHING`;

const INSERT_STRIPE_PAYMENT = `
  INSERT INTO stripe_payments (payment_key, account_id, payment_intent_id, checkout_session_id, credits, amount,
                               currency, livemode, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT DO NOTHING`;

const SELECT_STRIPE_PAYMENT_BY_INTENT = `
  SELECT payment_key, account_id, credits, amount, currency FROM stripe_payments WHERE payment_intent_id = $1`;

const SELECT_CLAWBACK = 'SELECT ref, credits_due, credits_moved, shortfall FROM stripe_clawbacks WHERE ref = $1';

const SUM_CLAWBACKS_BY_KIND = `
  SELECT kind, COALESCE(SUM(credits_due), 0) AS due FROM stripe_clawbacks WHERE payment_key = $1 GROUP BY kind`;

const INSERT_CLAWBACK = `
  INSERT INTO stripe_clawbacks (ref, payment_key, kind, money, credits_due, credits_moved, shortfall, event_id, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT (ref) DO NOTHING
  RETURNING ref`;

const CLEAR_CLAWBACK_SHORTFALL = 'UPDATE stripe_clawbacks SET shortfall = 0 WHERE ref = $1';

export const accounts = {
  /** Creates an account with a zero balance (the WhatsApp domain calls this on first contact); its id. */
  async insert(q: Queryable, a: { plan: string | null; monthlyCredits: number; at: Date }): Promise<number> {
    const r = await q.query<{ id: number }>(INSERT_ACCOUNT, [a.plan, a.monthlyCredits, a.at]);
    return Number(r.rows[0]!.id);
  },

  /**
   * Locks the account row (every ledger write for one account is serialised here); its balance,
   * undefined for an unknown account.
   */
  async lock(q: Queryable, accountId: number): Promise<number | undefined> {
    const r = await q.query<{ balance: number }>(LOCK_ACCOUNT, [accountId]);
    return r.rows[0] ? Number(r.rows[0].balance) : undefined;
  },

  /** The cached balance, without locking; undefined for an unknown account. */
  async balance(q: Queryable, accountId: number): Promise<number | undefined> {
    const r = await q.query<{ balance: number }>(SELECT_BALANCE, [accountId]);
    return r.rows[0] ? Number(r.rows[0].balance) : undefined;
  },

  /** Moves the cached balance; only ever called after creditLedger.insert returned an id. */
  async addToBalance(q: Queryable, accountId: number, amount: number, at: Date): Promise<void> {
    await q.query(UPDATE_BALANCE, [accountId, amount, at]);
  },

  /** One batch of accounts on a plan, in id order after a cursor (monthly grant). */
  async onPlanAfter(
    q: Queryable,
    afterId: number,
    limit: number,
  ): Promise<{ id: number; plan: string; monthlyCredits: number }[]> {
    const r = await q.query<{ id: number; plan: string; monthly_credits: number }>(SELECT_PLAN_ACCOUNTS, [
      afterId,
      limit,
    ]);
    return r.rows.map((a) => ({ id: Number(a.id), plan: a.plan, monthlyCredits: Number(a.monthly_credits) }));
  },
};

export const creditLedger = {
  /** Appends one movement; its id, or undefined when the key was already used (a duplicate). */
  async insert(
    q: Queryable,
    e: {
      accountId: number;
      amount: number;
      kind: LedgerKind;
      key: string;
      sourceRef: string | null;
      balanceAfter: number;
      at: Date;
    },
  ): Promise<number | undefined> {
    const r = await q.query<{ id: number }>(INSERT_LEDGER_ENTRY, [
      e.accountId,
      e.amount,
      e.kind,
      e.key,
      e.sourceRef,
      e.balanceAfter,
      e.at,
    ]);
    return r.rows[0] ? Number(r.rows[0].id) : undefined;
  },

  /** The entry a key already names (to answer a duplicate, or refuse a key reused for another account). */
  async byKey(q: Queryable, key: string): Promise<LedgerEntry | undefined> {
    const r = await q.query<EntryRow>(SELECT_ENTRY_BY_KEY, [key]);
    return r.rows[0] ? toEntry(r.rows[0]) : undefined;
  },

  /** An account's movements, newest first. */
  async history(q: Queryable, accountId: number, limit: number): Promise<LedgerEntry[]> {
    const r = await q.query<EntryRow>(SELECT_HISTORY, [accountId, limit]);
    return r.rows.map(toEntry);
  },
};

export type HoldState = 'held' | 'settled' | 'released';

export const creditHolds = {
  /** Opens a hold (reserve); false when this ref was reserved before. */
  async insert(q: Queryable, h: { ref: string; accountId: number; amount: number; at: Date }): Promise<boolean> {
    return (await q.query(INSERT_HOLD, [h.ref, h.accountId, h.amount, h.at])).rowCount > 0;
  },

  /** A hold by its ref (read before locking its account), or undefined. */
  async find(
    q: Queryable,
    ref: string,
  ): Promise<{ ref: string; accountId: number; amount: number; state: HoldState } | undefined> {
    const r = await q.query<{ ref: string; account_id: number; amount: number; state: HoldState }>(SELECT_HOLD, [ref]);
    const row = r.rows[0];
    return row && { ref: row.ref, accountId: Number(row.account_id), amount: Number(row.amount), state: row.state };
  },

  /** Closes a held hold as settled or released: its amount, or undefined when it was already closed. */
  async close(q: Queryable, ref: string, state: 'settled' | 'released', at: Date): Promise<number | undefined> {
    const r = await q.query<{ amount: number }>(CLOSE_HOLD, [ref, state, at]);
    return r.rows[0] ? Number(r.rows[0].amount) : undefined;
  },
};

export const stripeEvents = {
  /** Whether a Stripe event id was recorded (to skip Stripe API reads for a redelivered event). */
  async seen(q: Queryable, eventId: string): Promise<boolean> {
    return (await q.query(SELECT_STRIPE_EVENT, [eventId])).rows.length > 0;
  },

  /** Records a Stripe event id; false when it was seen before. */
  async insert(
    q: Queryable,
    e: { eventId: string; type: string; livemode: boolean; receivedAt: Date },
  ): Promise<boolean> {
    return (await q.query(INSERT_STRIPE_EVENT, [e.eventId, e.type, e.livemode, e.receivedAt])).rowCount > 0;
  },

  /** Marks a Stripe event handled (in the transaction that recorded it). */
  async markProcessed(q: Queryable, eventId: string, at: Date): Promise<void> {
    await q.query(MARK_STRIPE_EVENT_PROCESSED, [eventId, at]);
  },
};

export const stripeUnmatchedPayments = {
  /** Keeps a paid session the service could not credit, for an operator (once per event). */
  async insert(
    q: Queryable,
    p: {
      eventId: string;
      objectId: string;
      clientReferenceId: string | null;
      reason: string;
      payload: unknown;
      at: Date;
    },
  ): Promise<void> {
    await q.query(INSERT_UNMATCHED_PAYMENT, [
      p.eventId,
      p.objectId,
      p.clientReferenceId,
      p.reason,
      JSON.stringify(p.payload),
      p.at,
    ]);
  },
};

export const stripePayments = {
  /** Records a payment the webhook credits (or enqueued the crediting of); a known one is left as it is. */
  async insert(
    q: Queryable,
    p: {
      paymentKey: string;
      accountId: number;
      paymentIntentId: string | null;
      checkoutSessionId: string | null;
      credits: number;
      amount: number;
      currency: string | null;
      livemode: boolean;
      at: Date;
    },
  ): Promise<void> {
    await q.query(INSERT_STRIPE_PAYMENT, [
      p.paymentKey,
      p.accountId,
      p.paymentIntentId,
      p.checkoutSessionId,
      p.credits,
      p.amount,
      p.currency,
      p.livemode,
      p.at,
    ]);
  },

  /** The credited payment a charge or a dispute names through its payment intent. */
  async byIntent(
    q: Queryable,
    paymentIntentId: string,
  ): Promise<
    { paymentKey: string; accountId: number; credits: number; amount: number; currency: string | null } | undefined
  > {
    const r = await q.query<{
      payment_key: string;
      account_id: number;
      credits: number;
      amount: number;
      currency: string | null;
    }>(SELECT_STRIPE_PAYMENT_BY_INTENT, [paymentIntentId]);
    const row = r.rows[0];
    return (
      row && {
        paymentKey: row.payment_key,
        accountId: Number(row.account_id),
        credits: Number(row.credits),
        amount: Number(row.amount),
        currency: row.currency,
      }
    );
  },
};

export const stripeClawbacks = {
  /** One refund state or dispute step, if claimed before. */
  async find(
    q: Queryable,
    ref: string,
  ): Promise<{ ref: string; creditsDue: number; creditsMoved: number; shortfall: number } | undefined> {
    const r = await q.query<{ ref: string; credits_due: number; credits_moved: number; shortfall: number }>(
      SELECT_CLAWBACK,
      [ref],
    );
    const row = r.rows[0];
    return (
      row && {
        ref: row.ref,
        creditsDue: Number(row.credits_due),
        creditsMoved: Number(row.credits_moved),
        shortfall: Number(row.shortfall),
      }
    );
  },

  /** What a payment's refunds, disputes and won disputes asked for so far, by kind. */
  async dueByKind(q: Queryable, paymentKey: string): Promise<Map<string, number>> {
    const r = await q.query<{ kind: string; due: number }>(SUM_CLAWBACKS_BY_KIND, [paymentKey]);
    return new Map(r.rows.map((row) => [row.kind, Number(row.due)]));
  },

  /** Claims a refund state or dispute step; false when it was claimed before. */
  async insert(
    q: Queryable,
    c: {
      ref: string;
      paymentKey: string;
      kind: 'refund' | 'dispute' | 'dispute_won';
      money: number;
      creditsDue: number;
      creditsMoved: number;
      shortfall: number;
      eventId: string;
      at: Date;
    },
  ): Promise<boolean> {
    const r = await q.query(INSERT_CLAWBACK, [
      c.ref,
      c.paymentKey,
      c.kind,
      c.money,
      c.creditsDue,
      c.creditsMoved,
      c.shortfall,
      c.eventId,
      c.at,
    ]);
    return r.rowCount > 0;
  },

  /** A won dispute owes nothing: its shortfall is no longer an operator's to chase. */
  async clearShortfall(q: Queryable, ref: string): Promise<void> {
    await q.query(CLEAR_CLAWBACK_SHORTFALL, [ref]);
  },
};

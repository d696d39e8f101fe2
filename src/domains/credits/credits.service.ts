// The credits service: intent-named operations over the ledger, used by the tasks, the Stripe
// webhook, the CLI, the dashboard and the WhatsApp and blog domains. Each operation takes a Queryable:
// inside a transaction (a task's tx) it runs there; given the Db, it opens its own transaction.
// Every movement has a unique idempotency key, so a repeated call is answered "duplicate" and
// changes nothing; a debit the balance cannot cover is refused and changes nothing.
import { randomUUID } from 'node:crypto';
import type { Queryable, Tx } from '../../db/db.ts';
import { accounts, creditHolds, creditLedger, type LedgerEntry, type LedgerKind } from './credits.repository.ts';

export type { LedgerEntry, LedgerKind } from './credits.repository.ts';

/** applied: this call wrote the entry; otherwise the key had been used and nothing changed. */
export interface Movement {
  applied: boolean;
  entryId: number;
  /** The account's balance after this call. */
  balance: number;
}

export class UnknownAccountError extends Error {
  readonly accountId: number;
  constructor(accountId: number) {
    super(`no account ${accountId}`);
    this.name = 'UnknownAccountError';
    this.accountId = accountId;
  }
}

export class InsufficientCreditsError extends Error {
  readonly balance: number;
  readonly needed: number;
  constructor(accountId: number, balance: number, needed: number) {
    super(`account ${accountId} has ${balance} credits; ${needed} needed`);
    this.name = 'InsufficientCreditsError';
    this.balance = balance;
    this.needed = needed;
  }
}

/** Runs fn in q's transaction when q is one, else in a new transaction of q (a Db). */
export async function inTransaction<T>(q: Queryable, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  if ((q as Partial<Tx>).inTransaction) return fn(q);
  const db = q as Queryable & { transaction?: <R>(f: (tx: Tx) => Promise<R>) => Promise<R> };
  if (typeof db.transaction !== 'function') throw new Error('credits: a Db or a transaction is required');
  return db.transaction(fn);
}

export interface MoveInput {
  accountId: number;
  /** Signed: positive credits the account, negative debits it. Never 0. */
  amount: number;
  kind: LedgerKind;
  key: string;
  sourceRef?: string | null;
  at?: Date;
}

/** The one ledger write: lock the account, insert the entry once, move the balance if inserted. */
export async function move(q: Queryable, input: MoveInput): Promise<Movement> {
  if (!Number.isSafeInteger(input.amount) || input.amount === 0) {
    throw new RangeError(`credits: amount must be a non-zero integer, got ${input.amount}`);
  }
  return inTransaction(q, async (tx) => {
    const at = input.at ?? new Date();
    const balance = await accounts.lock(tx, input.accountId);
    if (balance === undefined) throw new UnknownAccountError(input.accountId);
    const after = balance + input.amount;
    if (after < 0 || !Number.isSafeInteger(after)) {
      // A repeat of a movement that was applied when the balance allowed it is still a duplicate.
      const existing = await creditLedger.byKey(tx, input.key);
      if (existing) return duplicate(existing, input, balance);
      if (after < 0) throw new InsufficientCreditsError(input.accountId, balance, -input.amount);
      // A balance JavaScript cannot hold exactly would be read back wrong: refused, nothing written.
      throw new RangeError(`credits: account ${input.accountId}'s balance would pass ${Number.MAX_SAFE_INTEGER}`);
    }
    const entryId = await creditLedger.insert(tx, {
      accountId: input.accountId,
      amount: input.amount,
      kind: input.kind,
      key: input.key,
      sourceRef: input.sourceRef ?? null,
      balanceAfter: after,
      at,
    });
    if (entryId === undefined) {
      const existing = await creditLedger.byKey(tx, input.key);
      if (!existing) throw new Error(`credits: ledger key ${input.key} conflicted but cannot be read`);
      return duplicate(existing, input, balance);
    }
    await accounts.addToBalance(tx, input.accountId, input.amount, at);
    return { applied: true, entryId, balance: after };
  });
}

function duplicate(existing: LedgerEntry, input: MoveInput, balance: number): Movement {
  // The same key for another movement (account, amount or kind) is a caller's mistake, not a repeat.
  if (existing.accountId !== input.accountId || existing.amount !== input.amount || existing.kind !== input.kind) {
    throw new Error(
      `credits: key ${input.key} was used for ${existing.kind} ${existing.amount} on account ${existing.accountId}, ` +
        `not ${input.kind} ${input.amount} on account ${input.accountId}`,
    );
  }
  return { applied: false, entryId: existing.id, balance };
}

const positive = (n: number, what: string) => {
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`credits: ${what} must be a positive integer, got ${n}`);
  return n;
};

export interface NewAccount {
  plan?: string | null;
  monthlyCredits?: number;
  at?: Date;
}

/** Creates an account with a zero balance; grantSignup gives it its first credits. */
export async function createAccount(q: Queryable, input: NewAccount = {}): Promise<number> {
  return accounts.insert(q, {
    plan: input.plan ?? null,
    monthlyCredits: input.monthlyCredits ?? 0,
    at: input.at ?? new Date(),
  });
}

/** The sign-up grant: once per account, whatever the number of calls. 0 credits: nothing. */
export async function grantSignup(
  q: Queryable,
  accountId: number,
  credits: number,
  at?: Date,
): Promise<Movement | undefined> {
  if (credits === 0) return undefined;
  return move(q, {
    accountId,
    amount: positive(credits, 'signup credits'),
    kind: 'signup_grant',
    key: `signup:${accountId}`,
    at,
  });
}

export interface TopUpInput {
  accountId: number;
  credits: number;
  /** The payment's key (stripe:pi:… or stripe:cs:…): one payment credits once. */
  key: string;
  sourceRef: string;
  at?: Date;
}

export async function topUp(q: Queryable, input: TopUpInput): Promise<Movement> {
  return move(q, {
    accountId: input.accountId,
    amount: positive(input.credits, 'top-up credits'),
    kind: 'topup',
    key: input.key,
    sourceRef: input.sourceRef,
    at: input.at,
  });
}

/** The key of an account's monthly grant: one per account and calendar month (UTC). */
export const monthlyGrantKey = (accountId: number, month: string) => `grant:monthly:${accountId}:${month}`;

export async function grantMonthly(
  q: Queryable,
  input: { accountId: number; credits: number; month: string; plan: string; at?: Date },
): Promise<Movement> {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(input.month)) throw new RangeError(`credits: month must be YYYY-MM`);
  return move(q, {
    accountId: input.accountId,
    amount: positive(input.credits, 'monthly credits'),
    kind: 'monthly_grant',
    key: monthlyGrantKey(input.accountId, input.month),
    sourceRef: `plan:${input.plan}`,
    at: input.at,
  });
}

export interface ChargeInput {
  accountId: number;
  credits: number;
  /** What is being paid for (a request id): one charge per ref. */
  ref: string;
  at?: Date;
}

/** A one-step charge; InsufficientCreditsError when the balance cannot cover it (nothing changes). */
export async function charge(q: Queryable, input: ChargeInput): Promise<Movement> {
  return move(q, {
    accountId: input.accountId,
    amount: -positive(input.credits, 'charge'),
    kind: 'charge',
    key: `charge:${input.ref}`,
    sourceRef: input.ref,
    at: input.at,
  });
}

/** Gives back a charge (or part of one), once per ref. */
export async function refund(q: Queryable, input: ChargeInput): Promise<Movement> {
  return move(q, {
    accountId: input.accountId,
    amount: positive(input.credits, 'refund'),
    kind: 'refund',
    key: `refund:${input.ref}`,
    sourceRef: input.ref,
    at: input.at,
  });
}

/**
 * Step one of a charge around slow work (the LLM call): debits now, so two requests cannot spend
 * the same credits. Once per ref. Then settle (the work happened) or release (it failed for good).
 */
export async function reserve(q: Queryable, input: ChargeInput): Promise<Movement> {
  return inTransaction(q, async (tx) => {
    const at = input.at ?? new Date();
    const credits = positive(input.credits, 'reservation');
    const movement = await move(tx, {
      accountId: input.accountId,
      amount: -credits,
      kind: 'charge',
      key: `hold:${input.ref}`,
      sourceRef: input.ref,
      at,
    });
    if (movement.applied)
      await creditHolds.insert(tx, { ref: input.ref, accountId: input.accountId, amount: credits, at });
    return movement;
  });
}

export interface HoldOutcome {
  /** False when the hold was already settled or released (or never existed): nothing changed. */
  closed: boolean;
  refunded: number;
}

/** Keeps a reservation; `used` below the reserved amount refunds the difference. Once per ref. */
export async function settle(q: Queryable, ref: string, used?: number, at?: Date): Promise<HoldOutcome> {
  return closeHold(q, ref, 'settled', used, at);
}

/** Gives a reservation back in full. Once per ref; nothing after a settle. */
export async function release(q: Queryable, ref: string, at?: Date): Promise<HoldOutcome> {
  return closeHold(q, ref, 'released', 0, at);
}

async function closeHold(
  q: Queryable,
  ref: string,
  state: 'settled' | 'released',
  used: number | undefined,
  at = new Date(),
): Promise<HoldOutcome> {
  if (used !== undefined && (!Number.isSafeInteger(used) || used < 0)) {
    throw new RangeError(`credits: used must be a non-negative integer, got ${used}`);
  }
  return inTransaction(q, async (tx) => {
    const hold = await creditHolds.find(tx, ref);
    if (!hold) return { closed: false, refunded: 0 };
    const accountId = hold.accountId;
    // The account first, as for every other movement: one lock order, no deadlock.
    await accounts.lock(tx, accountId);
    const amount = await creditHolds.close(tx, ref, state, at);
    if (amount === undefined) return { closed: false, refunded: 0 };
    const refunded = state === 'released' ? amount : Math.max(0, amount - Math.min(amount, used ?? amount));
    if (refunded > 0) {
      await move(tx, { accountId, amount: refunded, kind: 'refund', key: `${state}:${ref}`, sourceRef: ref, at });
    }
    return { closed: true, refunded };
  });
}

/** An operator's correction (CLI), with the reason recorded; the key lets a retried command apply once. */
export async function adjust(
  q: Queryable,
  input: { accountId: number; amount: number; reason: string; key?: string; at?: Date },
): Promise<Movement> {
  if (!input.reason.trim()) throw new RangeError('credits: an adjustment needs a reason');
  return move(q, {
    accountId: input.accountId,
    amount: input.amount,
    kind: 'adjustment',
    key: `adj:${input.key ?? randomUUID()}`,
    sourceRef: input.reason.trim(),
    at: input.at,
  });
}

/** The state of a reservation: held, settled, released; undefined when none was made. */
export async function holdState(q: Queryable, ref: string): Promise<'held' | 'settled' | 'released' | undefined> {
  return (await creditHolds.find(q, ref))?.state;
}

/** The cached balance; undefined for an unknown account. */
export async function balanceOf(q: Queryable, accountId: number): Promise<number | undefined> {
  return accounts.balance(q, accountId);
}

/** An account's movements, newest first. */
export async function history(q: Queryable, accountId: number, limit = 50): Promise<LedgerEntry[]> {
  return creditLedger.history(q, accountId, limit);
}

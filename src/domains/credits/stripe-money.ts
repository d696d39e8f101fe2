// Money going back to the customer, and the credits that follow it. The rule:
// - A refund takes back credits in proportion to the money refunded: floor(credits bought ×
//   amount refunded ÷ amount charged), counted on the charge's cumulative amount_refunded, so a
//   partial refund takes its share, a later one the rest, and a full refund all of them.
// - A dispute takes back floor(credits bought × amount disputed ÷ amount paid) when it opens; the
//   bank deciding for us (won, or an inquiry closed or prevented) gives back what it took; lost
//   keeps it taken. Refunds and disputes of one payment never take back more than it bought.
// - Never below zero: what the balance cannot cover is not taken but recorded as a shortfall
//   (stripe_clawbacks, and a line in stripe_unmatched_payments, which the dashboard lists).
// - Exactly once: each refund state (charge + amount_refunded) and each dispute step (its id) is a
//   row claimed in stripe_clawbacks under the account's lock, and its ledger entry is keyed by the
//   same ref; a redelivered event, or another event telling the same refund, changes nothing.
import type { Queryable } from '../../db/db.ts';
import { accounts, creditLedger, stripeClawbacks, stripePayments } from './credits.repository.ts';
import { move } from './credits.service.ts';

/** The key of a payment: the payment intent when known, else the checkout session. */
export function paymentKey(p: {
  paymentIntentId?: string | undefined;
  checkoutSessionId?: string | undefined;
}): string {
  if (p.paymentIntentId) return `stripe:pi:${p.paymentIntentId}`;
  if (p.checkoutSessionId) return `stripe:cs:${p.checkoutSessionId}`;
  throw new Error('a payment needs a payment intent or a checkout session id');
}

/** A payment the webhook credited (stripe_payments). */
export interface StripePayment {
  paymentKey: string;
  accountId: number;
  credits: number;
  /** In the currency's smallest unit. */
  amount: number;
  currency: string | null;
}

/** The payment was recorded but its top-up has not been applied yet: Stripe should redeliver later. */
export class TopupPendingError extends Error {
  constructor(paymentKey: string) {
    super(`the top-up ${paymentKey} is not applied yet`);
    this.name = 'TopupPendingError';
  }
}

export type MoneyResult =
  | { kind: 'moved'; ref: string; due: number; moved: number; shortfall: number; accountId: number }
  | { kind: 'duplicate'; ref: string }
  | { kind: 'no_payment'; reason: string };

/** The payment a charge or dispute names by its payment intent, or why there is none to act on. */
async function paymentOf(
  tx: Queryable,
  paymentIntentId: string | undefined,
): Promise<StripePayment | { reason: string }> {
  if (!paymentIntentId) return { reason: 'no payment_intent on the object' };
  const payment = await stripePayments.byIntent(tx, paymentIntentId);
  if (!payment) return { reason: `payment ${paymentIntentId} was not credited by this service` };
  if (!(await creditLedger.byKey(tx, payment.paymentKey))) throw new TopupPendingError(payment.paymentKey);
  return payment;
}

interface Accounted {
  /** Credits the refunds of this payment asked for so far (taken or short). */
  refunds: number;
  /** Everything refunds and open or lost disputes asked for: at most the credits bought. */
  total: number;
}

async function accounted(tx: Queryable, paymentKey: string): Promise<Accounted> {
  const by = await stripeClawbacks.dueByKind(tx, paymentKey);
  const refunds = by.get('refund') ?? 0;
  return { refunds, total: refunds + (by.get('dispute') ?? 0) - (by.get('dispute_won') ?? 0) };
}

/** floor(credits × part ÷ whole), exact in integers; the whole of it when whole is not positive. */
export function proportion(credits: number, part: number, whole: number): number {
  if (whole <= 0 || part >= whole) return credits;
  if (part <= 0) return 0;
  return Number((BigInt(credits) * BigInt(part)) / BigInt(whole));
}

interface Claim {
  ref: string;
  kind: 'refund' | 'dispute';
  money: number;
  /** Credits asked for by the rule, before the balance is looked at. */
  due: (a: Accounted) => number;
  eventId: string;
  at: Date;
}

/** Under the account's lock: claims the ref once, takes what the balance allows, records the rest. */
async function takeBack(tx: Queryable, payment: StripePayment, c: Claim): Promise<MoneyResult> {
  const balance = (await accounts.lock(tx, payment.accountId)) ?? 0;
  if (await stripeClawbacks.find(tx, c.ref)) return { kind: 'duplicate', ref: c.ref };
  const due = Math.max(0, c.due(await accounted(tx, payment.paymentKey)));
  // Never below zero: take what the balance covers; the rest is a shortfall for an operator.
  const moved = Math.min(due, balance);
  const shortfall = due - moved;
  const claimed = await stripeClawbacks.insert(tx, {
    ref: c.ref,
    paymentKey: payment.paymentKey,
    kind: c.kind,
    money: c.money,
    creditsDue: due,
    creditsMoved: moved,
    shortfall,
    eventId: c.eventId,
    at: c.at,
  });
  if (!claimed) return { kind: 'duplicate', ref: c.ref };
  if (moved > 0) {
    await move(tx, {
      accountId: payment.accountId,
      amount: -moved,
      kind: c.kind === 'refund' ? 'refund_clawback' : 'dispute_clawback',
      key: `clawback:${c.ref}`,
      sourceRef: c.ref,
      at: c.at,
    });
  }
  return { kind: 'moved', ref: c.ref, due, moved, shortfall, accountId: payment.accountId };
}

export interface RefundInput {
  chargeId: string;
  paymentIntentId: string | undefined;
  /** The charge's amount and its cumulative amount_refunded, smallest currency unit. */
  amount: number;
  amountRefunded: number;
  eventId: string;
  at: Date;
}

/** charge.refunded (full or partial): takes back the refunded share not taken back before. */
export async function applyRefund(tx: Queryable, input: RefundInput): Promise<MoneyResult> {
  const payment = await paymentOf(tx, input.paymentIntentId);
  if ('reason' in payment) return { kind: 'no_payment', reason: payment.reason };
  return takeBack(tx, payment, {
    ref: `refund:${input.chargeId}:${input.amountRefunded}`,
    kind: 'refund',
    money: input.amountRefunded,
    // The cumulative share minus what earlier refund states took: an older state arriving late
    // asks for nothing. Capped by what disputes left of the credits bought.
    due: (a) =>
      Math.min(
        proportion(payment.credits, input.amountRefunded, input.amount || payment.amount) - a.refunds,
        payment.credits - a.total,
      ),
    eventId: input.eventId,
    at: input.at,
  });
}

export interface DisputeInput {
  disputeId: string;
  paymentIntentId: string | undefined;
  /** The disputed amount, smallest currency unit. */
  amount: number;
  eventId: string;
  at: Date;
}

/** charge.dispute.created (and any closing that arrives first): takes back the disputed share once. */
export async function applyDispute(tx: Queryable, input: DisputeInput): Promise<MoneyResult> {
  const payment = await paymentOf(tx, input.paymentIntentId);
  if ('reason' in payment) return { kind: 'no_payment', reason: payment.reason };
  return takeBack(tx, payment, {
    ref: `dispute:${input.disputeId}`,
    kind: 'dispute',
    money: input.amount,
    due: (a) => Math.min(proportion(payment.credits, input.amount, payment.amount), payment.credits - a.total),
    eventId: input.eventId,
    at: input.at,
  });
}

/** Dispute statuses after which the money stays with us: the dispute's credits go back. */
export const DISPUTE_WON = new Set(['won', 'warning_closed', 'prevented']);

/**
 * charge.dispute.closed: the dispute is first applied (if its created event has not arrived yet),
 * then, when the bank decided for us, what it took is given back once (and its shortfall, no
 * longer owed, is cleared). Lost: nothing more.
 */
export async function closeDispute(tx: Queryable, input: DisputeInput & { status: string }): Promise<MoneyResult> {
  const opened = await applyDispute(tx, input);
  if (opened.kind === 'no_payment' || !DISPUTE_WON.has(input.status)) return opened;
  const payment = await paymentOf(tx, input.paymentIntentId);
  if ('reason' in payment) return { kind: 'no_payment', reason: payment.reason };
  await accounts.lock(tx, payment.accountId);
  const ref = `dispute_won:${input.disputeId}`;
  const dispute = await stripeClawbacks.find(tx, `dispute:${input.disputeId}`);
  const taken = dispute?.creditsMoved ?? 0;
  const due = dispute?.creditsDue ?? 0;
  const claimed = await stripeClawbacks.insert(tx, {
    ref,
    paymentKey: payment.paymentKey,
    kind: 'dispute_won',
    money: input.amount,
    creditsDue: due,
    creditsMoved: taken,
    shortfall: 0,
    eventId: input.eventId,
    at: input.at,
  });
  if (!claimed) return { kind: 'duplicate', ref };
  await stripeClawbacks.clearShortfall(tx, `dispute:${input.disputeId}`);
  if (taken > 0) {
    await move(tx, {
      accountId: payment.accountId,
      amount: taken,
      kind: 'dispute_reversal',
      key: `clawback:${ref}`,
      sourceRef: ref,
      at: input.at,
    });
  }
  return { kind: 'moved', ref, due: 0, moved: taken, shortfall: 0, accountId: payment.accountId };
}

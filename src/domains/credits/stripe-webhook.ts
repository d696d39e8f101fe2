// Stripe webhooks: the Stripe-Signature check over the raw bytes (as the stripe SDK's Webhooks does
// it, without the SDK) and the events this service acts on.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Db, Queryable } from '../../db/db.ts';
import type { Enqueue } from '../../tasks/define-task.ts';
import { stripeEvents, stripePayments, stripeUnmatchedPayments } from './credits.repository.ts';
import { balanceOf } from './credits.service.ts';
import { applyDispute, applyRefund, closeDispute, type MoneyResult, paymentKey } from './stripe-money.ts';

/** Stripe's default: a signature older than this many seconds is refused (replay window). */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/**
 * Checks `Stripe-Signature: t=…,v1=…[,v1=…]`: HMAC-SHA256 of `${t}.${rawBody}` keyed with the
 * endpoint secret, hex, compared in constant time with every v1 (several during secret rotation;
 * other schemes such as v0 are ignored), and t no more than 300 s old by the given clock.
 */
export function verifyStripeSignature(
  rawBody: Buffer,
  header: string | undefined,
  secret: string,
  nowMs: number,
  toleranceSeconds = SIGNATURE_TOLERANCE_SECONDS,
): SignatureCheck {
  if (!header) return { ok: false, reason: 'no Stripe-Signature header' };
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === 't' && /^\d+$/.test(value)) timestamp = Number(value);
    else if (name === 'v1') signatures.push(value);
  }
  if (timestamp === undefined) return { ok: false, reason: 'no timestamp in Stripe-Signature' };
  if (signatures.length === 0) return { ok: false, reason: 'no v1 signature in Stripe-Signature' };
  const expected = createHmac('sha256', secret).update(`${timestamp}.`, 'utf8').update(rawBody).digest();
  const matches = signatures.some((s) => {
    if (!/^[0-9a-f]{64}$/i.test(s)) return false;
    return timingSafeEqual(Buffer.from(s, 'hex'), expected);
  });
  if (!matches) return { ok: false, reason: 'no v1 signature matches the payload' };
  if (toleranceSeconds > 0 && Math.floor(nowMs / 1000) - timestamp > toleranceSeconds) {
    return { ok: false, reason: 'timestamp outside the tolerance zone' };
  }
  return { ok: true };
}

/** The header Stripe would send for this payload (tests, and `generateTestHeaderString`'s job). */
export function signStripePayload(payload: string | Buffer, secret: string, timestampSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.`, 'utf8').update(payload).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

export const stripeEventSchema = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  livemode: z.boolean().default(false),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});

export type StripeEvent = z.infer<typeof stripeEventSchema>;

/** An expandable field: the id, whether Stripe sent the id or the object. */
const expandable = z
  .union([z.string(), z.object({ id: z.string() })])
  .nullish()
  .transform((v) => (typeof v === 'string' ? v : v?.id));

const checkoutSessionSchema = z.object({
  id: z.string().min(1),
  payment_status: z.string().optional(),
  client_reference_id: z.string().nullish(),
  payment_intent: expandable,
  amount_total: z.number().int().nonnegative().nullish(),
  currency: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
});

const paymentIntentSchema = z.object({
  id: z.string().min(1),
  amount: z.number().int().nonnegative().nullish(),
  amount_received: z.number().int().nonnegative().nullish(),
  currency: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
});

const chargeSchema = z.object({
  id: z.string().min(1),
  amount: z.number().int().nonnegative(),
  amount_refunded: z.number().int().nonnegative(),
  payment_intent: expandable,
});

const disputeSchema = z.object({
  id: z.string().min(1),
  amount: z.number().int().nonnegative(),
  status: z.string().min(1),
  payment_intent: expandable,
});

/** What a payment event asks for: a top-up, a payment kept for an operator, or nothing. */
export type PaymentAction =
  | {
      kind: 'topup';
      accountId: number;
      credits: number;
      checkoutSessionId?: string;
      paymentIntentId?: string;
      /** What was paid (0 for a session a promotion code made free), smallest currency unit. */
      amount?: number;
      currency?: string;
    }
  | { kind: 'unmatched'; objectId: string; clientReferenceId: string | null; reason: string }
  | { kind: 'ignore'; reason: string };

const ACCOUNT_ID = /^[1-9]\d{0,15}$/;
const CREDITS = /^[1-9]\d{0,8}$/;

/** Session payment states that credit: paid, and free (a 100% promotion code: nothing to pay). */
const CREDITING_STATUSES = new Set(['paid', 'no_payment_required']);

/**
 * Maps an event to its action. A paid (or free) Checkout Session names the account in
 * client_reference_id and the credits of one unit in metadata.credits. A payment_intent.succeeded
 * acts only when its own metadata carries account_id and credits (payment_intent_data.metadata);
 * both are keyed on the payment intent, so one payment credits once whichever event arrives first.
 */
export function paymentAction(event: StripeEvent): PaymentAction {
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded': {
      const parsed = checkoutSessionSchema.safeParse(event.data.object);
      if (!parsed.success) return { kind: 'ignore', reason: 'not a checkout session object' };
      const session = parsed.data;
      // completed with payment_status "unpaid" is a delayed method: async_payment_succeeded follows.
      if (!CREDITING_STATUSES.has(session.payment_status ?? ''))
        return { kind: 'ignore', reason: `payment_status ${session.payment_status}` };
      const ref = session.client_reference_id ?? null;
      const credits = session.metadata?.credits;
      if (!ref || !ACCOUNT_ID.test(ref)) {
        return {
          kind: 'unmatched',
          objectId: session.id,
          clientReferenceId: ref,
          reason: 'no account id in client_reference_id',
        };
      }
      if (!credits || !CREDITS.test(credits)) {
        return {
          kind: 'unmatched',
          objectId: session.id,
          clientReferenceId: ref,
          reason: 'no credits in metadata.credits',
        };
      }
      return {
        kind: 'topup',
        accountId: Number(ref),
        credits: Number(credits),
        checkoutSessionId: session.id,
        ...(session.payment_intent ? { paymentIntentId: session.payment_intent } : {}),
        amount: session.amount_total ?? 0,
        ...(session.currency ? { currency: session.currency } : {}),
      };
    }
    case 'payment_intent.succeeded': {
      const parsed = paymentIntentSchema.safeParse(event.data.object);
      if (!parsed.success) return { kind: 'ignore', reason: 'not a payment intent object' };
      const account = parsed.data.metadata?.account_id;
      const credits = parsed.data.metadata?.credits;
      if (!account || !ACCOUNT_ID.test(account) || !credits || !CREDITS.test(credits)) {
        return { kind: 'ignore', reason: 'the checkout session event carries this payment' };
      }
      return {
        kind: 'topup',
        accountId: Number(account),
        credits: Number(credits),
        paymentIntentId: parsed.data.id,
        amount: parsed.data.amount_received ?? parsed.data.amount ?? 0,
        ...(parsed.data.currency ? { currency: parsed.data.currency } : {}),
      };
    }
    default:
      return { kind: 'ignore', reason: `event type ${event.type} is not handled` };
  }
}

/** Event types that move credits: payments, refunds and disputes. Others are acknowledged only. */
const MONEY_EVENTS = new Set([
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'payment_intent.succeeded',
  'charge.refunded',
  'charge.dispute.created',
  'charge.dispute.closed',
]);

/** A checkout session's line item as this service reads it: units bought, credits per unit if the price says. */
export interface SessionLineItem {
  quantity: number;
  /** metadata.credits of the item's price, else of its product. */
  unitCredits: string | undefined;
}

/** Stripe refused to list a session's line items for good (an unknown session, a key without access). */
export class LineItemsRefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LineItemsRefusedError';
  }
}

/** The part of Stripe's API the webhook reads (stripe-api.ts; a fake in tests). */
export interface StripeApi {
  listLineItems(checkoutSessionId: string): Promise<SessionLineItem[]>;
}

export type KeyMode = 'live' | 'test';

/** The mode of a Stripe API key (sk_live_…, rk_test_…), undefined for anything else. */
export function keyMode(secretKey: string | undefined): KeyMode | undefined {
  const m = /^(?:sk|rk)_(live|test)_/.exec(secretKey ?? '');
  return m ? (m[1] as KeyMode) : undefined;
}

export interface StripeWebhookOptions {
  /** The configured key's mode: an event of the other mode is recorded and ignored. */
  keyMode?: KeyMode | undefined;
  /** With a secret key: a session's line items say how many units were bought. */
  api?: StripeApi | undefined;
}

/**
 * The credits a session bought, from its line items: each item's units × its price's (or
 * product's) metadata.credits, or, for a single item without its own, the session's
 * metadata.credits per unit. Anything else is not guessed: a reason for an operator.
 */
export function creditsFromLineItems(
  items: readonly SessionLineItem[],
  sessionUnitCredits: number,
): { credits: number } | { reason: string } {
  if (items.length === 0) return { reason: 'the session has no line items' };
  let credits = 0;
  for (const item of items) {
    const own = item.unitCredits;
    if (own !== undefined && !CREDITS.test(own)) return { reason: `line item metadata.credits ${own} is not a count` };
    if (own === undefined && items.length > 1) {
      return { reason: 'several line items and not every price or product has metadata.credits' };
    }
    if (!Number.isSafeInteger(item.quantity) || item.quantity < 1) return { reason: 'a line item has no quantity' };
    credits += item.quantity * (own === undefined ? sessionUnitCredits : Number(own));
  }
  return { credits };
}

export interface StripeEventOutcome {
  /** duplicate: the event id was seen before and nothing changed. */
  outcome: 'duplicate' | 'topup_enqueued' | 'unmatched' | 'ignored' | 'mode_mismatch' | 'clawback' | 'giveback';
  detail?: string;
}

/**
 * Records a verified event by id and acts on it, in one transaction: a new paid (or free) session
 * records the payment and enqueues credits.topup through the outbox (sent after commit); a refund
 * or dispute takes credits back (stripe-money.ts); one naming no known account or payment, or
 * an event of the other mode than the configured key's, is kept in stripe_unmatched_payments for
 * an operator; a seen event id changes nothing. With a Stripe API, a session's line items are
 * read first (outside the transaction), so several units credit each unit.
 */
export async function handleStripeEvent(
  db: Db,
  enqueue: Enqueue,
  event: StripeEvent,
  nowMs: number,
  options: StripeWebhookOptions = {},
): Promise<StripeEventOutcome> {
  let action = paymentAction(event);
  const at = new Date(nowMs);
  const mismatch =
    options.keyMode !== undefined && MONEY_EVENTS.has(event.type) && event.livemode !== (options.keyMode === 'live');
  if (!mismatch && action.kind === 'topup' && action.checkoutSessionId && options.api) {
    if (!(await stripeEvents.seen(db, event.id))) action = await countUnits(options.api, action);
  }
  return db.transaction(async (tx) => {
    const fresh = await stripeEvents.insert(tx, {
      eventId: event.id,
      type: event.type,
      livemode: event.livemode,
      receivedAt: at,
    });
    if (!fresh) return { outcome: 'duplicate' };
    const object = event.data.object;
    const keep = (objectId: string, clientReferenceId: string | null, reason: string) =>
      stripeUnmatchedPayments.insert(tx, {
        eventId: event.id,
        objectId,
        clientReferenceId,
        reason,
        payload: object,
        at,
      });
    let result: StripeEventOutcome;
    if (mismatch) {
      const reason = `a ${event.livemode ? 'live' : 'test'} mode event, and the configured key is a ${options.keyMode} key`;
      await keep(String(object.id ?? event.id), null, reason);
      result = { outcome: 'mode_mismatch', detail: reason };
    } else if (event.type === 'charge.refunded' || event.type.startsWith('charge.dispute.')) {
      result = await moneyBack(tx, event, at, keep);
    } else if (action.kind === 'topup' && (await balanceOf(tx, action.accountId)) !== undefined) {
      // The payment intent when the event carries one, else the session: the same payload (and
      // key) whichever event of one payment arrives.
      const payment = action.paymentIntentId
        ? { paymentIntentId: action.paymentIntentId }
        : { checkoutSessionId: action.checkoutSessionId! };
      await stripePayments.insert(tx, {
        paymentKey: paymentKey(action),
        accountId: action.accountId,
        paymentIntentId: action.paymentIntentId ?? null,
        checkoutSessionId: action.checkoutSessionId ?? null,
        credits: action.credits,
        amount: action.amount ?? 0,
        currency: action.currency ?? null,
        livemode: event.livemode,
        at,
      });
      await enqueue('credits.topup', { accountId: action.accountId, credits: action.credits, ...payment }, { tx });
      result = { outcome: 'topup_enqueued', detail: paymentKey(action) };
    } else if (action.kind === 'ignore') {
      result = { outcome: 'ignored', detail: action.reason };
    } else {
      const unmatched =
        action.kind === 'unmatched'
          ? action
          : {
              objectId: action.checkoutSessionId ?? action.paymentIntentId ?? event.id,
              clientReferenceId: String(action.accountId),
              reason: `no account ${action.accountId}`,
            };
      await keep(unmatched.objectId, unmatched.clientReferenceId, unmatched.reason);
      result = { outcome: 'unmatched', detail: unmatched.reason };
    }
    await stripeEvents.markProcessed(tx, event.id, at);
    return result;
  });
}

/** A session's units from its line items: the credits they add up to, or the session kept for an operator. */
async function countUnits(api: StripeApi, action: Extract<PaymentAction, { kind: 'topup' }>): Promise<PaymentAction> {
  let counted: ReturnType<typeof creditsFromLineItems>;
  try {
    counted = creditsFromLineItems(await api.listLineItems(action.checkoutSessionId!), action.credits);
  } catch (err) {
    if (!(err instanceof LineItemsRefusedError)) throw err;
    counted = { reason: `line items not readable: ${err.message}` };
  }
  if ('reason' in counted) {
    return {
      kind: 'unmatched',
      objectId: action.checkoutSessionId!,
      clientReferenceId: String(action.accountId),
      reason: `credits not counted: ${counted.reason}`,
    };
  }
  return { ...action, credits: counted.credits };
}

/** charge.refunded, charge.dispute.created and .closed: credits back (stripe-money.ts), once. */
async function moneyBack(
  tx: Queryable,
  event: StripeEvent,
  at: Date,
  keep: (objectId: string, clientReferenceId: string | null, reason: string) => Promise<unknown>,
): Promise<StripeEventOutcome> {
  let result: MoneyResult;
  let objectId: string;
  if (event.type === 'charge.refunded') {
    const charge = chargeSchema.safeParse(event.data.object);
    if (!charge.success) return { outcome: 'ignored', detail: 'not a charge object' };
    objectId = charge.data.id;
    result = await applyRefund(tx, {
      chargeId: charge.data.id,
      paymentIntentId: charge.data.payment_intent,
      amount: charge.data.amount,
      amountRefunded: charge.data.amount_refunded,
      eventId: event.id,
      at,
    });
  } else if (event.type === 'charge.dispute.created' || event.type === 'charge.dispute.closed') {
    const dispute = disputeSchema.safeParse(event.data.object);
    if (!dispute.success) return { outcome: 'ignored', detail: 'not a dispute object' };
    objectId = dispute.data.id;
    const input = {
      disputeId: dispute.data.id,
      paymentIntentId: dispute.data.payment_intent,
      amount: dispute.data.amount,
      eventId: event.id,
      at,
    };
    result =
      event.type === 'charge.dispute.created'
        ? await applyDispute(tx, input)
        : await closeDispute(tx, { ...input, status: dispute.data.status });
  } else {
    return { outcome: 'ignored', detail: `event type ${event.type} is not handled` };
  }
  if (result.kind === 'no_payment') {
    await keep(objectId, null, `${event.type}: ${result.reason}`);
    return { outcome: 'unmatched', detail: result.reason };
  }
  if (result.kind === 'duplicate') return { outcome: 'ignored', detail: `${result.ref} was applied before` };
  if (result.shortfall > 0) {
    await keep(
      objectId,
      String(result.accountId),
      `${event.type}: ${result.due} credits due, ${result.moved} taken back, shortfall ${result.shortfall}`,
    );
  }
  const giveback = result.ref.startsWith('dispute_won:');
  return {
    outcome: giveback ? 'giveback' : 'clawback',
    detail: `${result.ref}: ${result.moved} of ${giveback ? result.moved : result.due} credits`,
  };
}

// Stripe webhooks: the Stripe-Signature check over the raw bytes (as the stripe SDK's Webhooks does
// it, without the SDK) and the events this service acts on.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../../db/db.ts';
import type { Enqueue } from '../../tasks/define-task.ts';
import * as sql from './credits.repository.ts';
import { balanceOf } from './credits.service.ts';
import { paymentKey } from './topup.task.ts';

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

const checkoutSessionSchema = z.object({
  id: z.string().min(1),
  payment_status: z.string().optional(),
  client_reference_id: z.string().nullish(),
  payment_intent: z
    .union([z.string(), z.object({ id: z.string() })])
    .nullish()
    .transform((v) => (typeof v === 'string' ? v : v?.id)),
  metadata: z.record(z.string(), z.string()).nullish(),
});

const paymentIntentSchema = z.object({
  id: z.string().min(1),
  metadata: z.record(z.string(), z.string()).nullish(),
});

/** What a payment event asks for: a top-up, a payment kept for an operator, or nothing. */
export type PaymentAction =
  | {
      kind: 'topup';
      accountId: number;
      credits: number;
      checkoutSessionId?: string;
      paymentIntentId?: string;
    }
  | { kind: 'unmatched'; objectId: string; clientReferenceId: string | null; reason: string }
  | { kind: 'ignore'; reason: string };

const ACCOUNT_ID = /^[1-9]\d{0,15}$/;
const CREDITS = /^[1-9]\d{0,8}$/;

/**
 * Maps an event to its action. A paid Checkout Session names the account in
 * client_reference_id and the credits in metadata.credits. A payment_intent.succeeded acts only
 * when its own metadata carries account_id and credits (payment_intent_data.metadata); both are
 * keyed on the payment intent, so one payment credits once whichever event arrives first.
 */
export function paymentAction(event: StripeEvent): PaymentAction {
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded': {
      const parsed = checkoutSessionSchema.safeParse(event.data.object);
      if (!parsed.success) return { kind: 'ignore', reason: 'not a checkout session object' };
      const session = parsed.data;
      // completed with payment_status "unpaid" is a delayed method: async_payment_succeeded follows.
      if (session.payment_status !== 'paid')
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
      return { kind: 'topup', accountId: Number(account), credits: Number(credits), paymentIntentId: parsed.data.id };
    }
    default:
      return { kind: 'ignore', reason: `event type ${event.type} is not handled` };
  }
}

export interface StripeEventOutcome {
  /** duplicate: the event id was seen before and nothing changed. */
  outcome: 'duplicate' | 'topup_enqueued' | 'unmatched' | 'ignored';
  detail?: string;
}

/**
 * Records a verified event by id and acts on it, in one transaction: a new paid session enqueues
 * credits.topup through the outbox (sent after commit); one naming no known account is kept in
 * stripe_unmatched_payments for an operator; a seen event id changes nothing.
 */
export function handleStripeEvent(
  db: Db,
  enqueue: Enqueue,
  event: StripeEvent,
  nowMs: number,
): Promise<StripeEventOutcome> {
  const action = paymentAction(event);
  const at = new Date(nowMs);
  return db.transaction(async (tx) => {
    const fresh = await tx.query(sql.INSERT_STRIPE_EVENT, [event.id, event.type, event.livemode, at]);
    if (fresh.rowCount === 0) return { outcome: 'duplicate' };
    let result: StripeEventOutcome;
    if (action.kind === 'topup' && (await balanceOf(tx, action.accountId)) !== undefined) {
      // The payment intent when the event carries one, else the session: the same payload (and
      // key) whichever event of one payment arrives.
      const payment = action.paymentIntentId
        ? { paymentIntentId: action.paymentIntentId }
        : { checkoutSessionId: action.checkoutSessionId! };
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
      await tx.query(sql.INSERT_UNMATCHED_PAYMENT, [
        event.id,
        unmatched.objectId,
        unmatched.clientReferenceId,
        unmatched.reason,
        JSON.stringify(event.data.object),
        at,
      ]);
      result = { outcome: 'unmatched', detail: unmatched.reason };
    }
    await tx.query(sql.MARK_STRIPE_EVENT_PROCESSED, [event.id, at]);
    return result;
  });
}

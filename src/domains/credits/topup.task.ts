// credits.topup (transactional): applies one paid top-up exactly once. The run and the ledger
// entry share one key, the payment's: `stripe:pi:{payment intent}` when known (both
// checkout.session.completed and payment_intent.succeeded carry it), else `stripe:cs:{session}`.
// Duplicate deliveries stop at the claim; the ledger's unique key is the guarantee beneath it.
// When the entry is written, the account's WhatsApp contact is told, in the same transaction
// (through the outbox, keyed by the payment): one confirmation per top-up, with the new balance.
import { z } from 'zod';
import { defineTask } from '../../tasks/define-task.ts';
import { NonRetryableError } from '../../tasks/task-errors.ts';
import { addressOfAccount, enqueueReply } from '../whatsapp/index.ts';
import { topupConfirmedReply } from './credits.replies.ts';
import { topUp, UnknownAccountError } from './credits.service.ts';
import { paymentKey } from './stripe-money.ts';

// Exactly one payment id, and nothing that differs between the events of one payment (no event
// id): the push route refuses a key seen before with a different payload as dead, so the
// checkout.session.completed and payment_intent.succeeded of one payment must enqueue the very
// same payload. (stripeTopupPayload builds it.)
export const topupPayload = z
  .object({
    accountId: z.number().int().positive(),
    credits: z.number().int().positive(),
    paymentIntentId: z.string().min(1).optional(),
    checkoutSessionId: z.string().min(1).optional(),
  })
  .strict()
  .refine((p) => (p.paymentIntentId === undefined) !== (p.checkoutSessionId === undefined), {
    error: 'exactly one of paymentIntentId and checkoutSessionId is required',
  });

export const topupTask = defineTask({
  name: 'credits.topup',
  queue: 'credits',
  payload: topupPayload,
  idempotencyKey: (payload) => paymentKey(payload),
  transactional: true,
  deadlineSeconds: 30,
  async handler(ctx) {
    const p = ctx.payload;
    const key = paymentKey(p);
    try {
      const m = await topUp(ctx.db, {
        accountId: p.accountId,
        credits: p.credits,
        key,
        sourceRef: p.paymentIntentId ?? p.checkoutSessionId ?? key,
        at: new Date(ctx.clock.now()),
      });
      if (m.applied) {
        ctx.log.info({ accountId: p.accountId, credits: p.credits, key }, 'top-up applied');
        const to = await addressOfAccount(ctx.db, p.accountId);
        if (to) {
          await enqueueReply(
            ctx.enqueue,
            {
              to,
              text: topupConfirmedReply(p.credits, m.balance),
              key: `topup-confirmed:${key}`,
              accountId: p.accountId,
            },
            { tx: ctx.db },
          );
        }
      }
      return { applied: m.applied, entryId: m.entryId, balance: m.balance };
    } catch (err) {
      if (err instanceof UnknownAccountError) {
        // Dead, visible in `runs list --status dead`, and replayable once the account exists.
        throw new NonRetryableError(`top-up ${key} names no known account (${p.accountId})`, { cause: err });
      }
      throw err;
    }
  },
});

// whatsapp.send_message: one text (≤ 4096 characters) to one user, through the Graph API, or into
// the offline outbox when no access token is configured. `to` is a phone number or a BSUID; the
// user's current one is looked up at send time (identity.ts), and its shape picks the Graph API
// field (`to` or `recipient`). The producer chooses the key; the
// outbound row is keyed by it too, so a message the Graph API accepted is never sent again by a
// later delivery of the same task. (A crash between Meta's answer and our write can still send
// twice: the Graph API has no idempotency key.)
import { z } from 'zod';
import { defineTask } from '../../tasks/define-task.ts';
import { NonRetryableError, RetryAfterError } from '../../tasks/task-errors.ts';
import { classifyGraphError, GraphApiError, type WhatsAppApi } from './graph-api.ts';
import { currentAddress, recipientFields } from './identity.ts';
import { MAX_TEXT_LENGTH } from './replies.ts';
import { whatsappMessages } from './whatsapp.repository.ts';

export interface WhatsAppServices {
  /** The Graph API client; undefined without WHATSAPP_ACCESS_TOKEN (offline outbox). */
  api: WhatsAppApi | undefined;
  phoneNumberId: string | undefined;
  /** Credits a new account starts with. */
  signupCredits: number;
  /** Credits one blog post costs. */
  postCost: number;
  paymentLinkUrl: string | undefined;
}

declare module '../../tasks/define-task.ts' {
  interface TaskServices {
    whatsapp: WhatsAppServices;
  }
}

export const sendMessagePayload = z
  .object({
    to: z.string().min(1).max(160),
    text: z.string().trim().min(1).max(MAX_TEXT_LENGTH),
    replyTo: z.string().min(1).max(256).optional(),
    accountId: z.number().int().positive().optional(),
  })
  .strict();

export const sendMessageTask = defineTask({
  name: 'whatsapp.send_message',
  queue: 'whatsapp',
  payload: sendMessagePayload,
  deadlineSeconds: 30,
  async handler(ctx) {
    const { text, replyTo } = ctx.payload;
    const { api, phoneNumberId } = ctx.services.whatsapp;
    const at = () => new Date(ctx.clock.now());
    // The user's address now: a reply queued before they moved to a new number or BSUID follows them.
    const to = await currentAddress(ctx.db, ctx.payload.to);
    const row = await whatsappMessages.claimOutbound(ctx.db, {
      sendKey: ctx.idempotencyKey,
      to,
      body: text,
      phoneNumberId: phoneNumberId ?? null,
      at: at(),
    });
    if (row.wamid || row.status === 'offline') return { sent: false, already: row.status, wamid: row.wamid };

    if (!api) {
      const request = {
        ...recipientFields(to),
        type: 'text',
        text: { body: text },
        ...(replyTo ? { context: { message_id: replyTo } } : {}),
      };
      await whatsappMessages.markOffline(ctx.db, row.id, request, at());
      ctx.log.info({ to, text, messageId: row.id }, `whatsapp offline outbox: reply to ${to}`);
      return { sent: false, offline: true, messageId: row.id };
    }
    try {
      const { wamid, request } = await api.sendText({ to, body: text, replyTo }, ctx.signal);
      await whatsappMessages.markAccepted(ctx.db, row.id, wamid, request, at());
      return { sent: true, wamid, messageId: row.id };
    } catch (err) {
      if (!(err instanceof GraphApiError)) throw err;
      const disposition = classifyGraphError(err, ctx.attempt);
      if (disposition.kind === 'dead') {
        await whatsappMessages.markFailed(ctx.db, row.id, err.toJSON(), at());
        throw new NonRetryableError(disposition.reason, { cause: err });
      }
      if (disposition.kind === 'retry-after') {
        throw new RetryAfterError(
          disposition.seconds,
          `Graph API error ${err.code}: ${err.message}; retry in ${disposition.seconds} s`,
          { cause: err },
        );
      }
      throw err;
    }
  },
});

// whatsapp.process_message (keyed by the wamid): the sender's account on first contact, with its
// sign-up grant; the message marked read; the command acted on. Everything it changes and every
// task it enqueues (replies, follow-up work) is written in one transaction, so a re-run after a
// crash finds the message processed and does nothing twice.
import { z } from 'zod';
import type { Queryable } from '../../db/db.ts';
import { defineTask, type TaskContext } from '../../tasks/define-task.ts';
import { NonRetryableError, RetryAfterError } from '../../tasks/task-errors.ts';
import { balanceReply, insufficientCreditsReply, topupReply } from '../credits/credits.replies.ts';
import { balanceOf, createAccount, grantSignup, inTransaction } from '../credits/credits.service.ts';
import { type Command, helpReply, parseCommand, unsupportedReply, welcomeReply } from './commands.ts';
import { enqueueReply } from './replies.ts';
import {
  type Contact,
  changePhone,
  findContact,
  findInbound,
  type InboundMessage,
  insertContact,
  markProcessed,
  touchContact,
} from './whatsapp.repository.ts';

export const processMessagePayload = z.object({ wamid: z.string().min(1).max(256) }).strict();

type Ctx = TaskContext<z.output<typeof processMessagePayload>>;

/** The contact (and account) of a message's sender, created with the sign-up grant on first contact. */
export async function ensureContact(
  tx: Queryable,
  who: { phone: string | null; bsuid: string | null; name: string | null },
  signupCredits: number,
  at: Date,
): Promise<{ contact: Contact; created: boolean; granted: number }> {
  const existing = await findContact(tx, who);
  if (existing) return { contact: existing, created: false, granted: 0 };
  const accountId = await createAccount(tx, { at });
  const contact = await insertContact(tx, { accountId, ...who, at });
  if (!contact) {
    // The same user's other first message committed its contact meanwhile: roll this back
    // (account included) and run again, which finds it.
    throw new RetryAfterError(1, 'another message created this contact concurrently');
  }
  const grant = await grantSignup(tx, accountId, signupCredits, at);
  return { contact, created: true, granted: grant?.applied ? signupCredits : 0 };
}

export const processMessageTask = defineTask({
  name: 'whatsapp.process_message',
  queue: 'whatsapp',
  payload: processMessagePayload,
  idempotencyKey: (payload) => payload.wamid,
  deadlineSeconds: 60,
  async handler(ctx) {
    const { wamid } = ctx.payload;
    const message = await findInbound(ctx.db, wamid);
    if (!message) throw new NonRetryableError(`no inbound WhatsApp message ${wamid} was recorded`);
    if (message.status === 'processed') return { duplicate: true };

    const { api } = ctx.services.whatsapp;
    if (api) {
      // Blue ticks and "typing…" while we work; a failure here must not stop the answer.
      await api.markRead(wamid, ctx.signal).catch((err: unknown) => {
        ctx.log.warn({ err, wamid }, 'could not mark the message read');
      });
    }
    return inTransaction(ctx.db, (tx) => respond(ctx, tx, message));
  },
});

async function respond(ctx: Ctx, tx: Queryable, message: InboundMessage) {
  const at = new Date(ctx.clock.now());
  const again = await findInbound(tx, message.wamid);
  if (again?.status === 'processed') return { duplicate: true };
  const { whatsapp } = ctx.services;
  const who = {
    phone: message.payload.contact?.waId ?? null,
    bsuid: message.payload.contact?.userId ?? null,
    name: message.payload.contact?.name ?? null,
  };
  if (!who.phone && !who.bsuid) who.phone = message.waUser;
  const { contact, created, granted } = await ensureContact(tx, who, whatsapp.signupCredits, at);
  await touchContact(tx, contact.id, { ...who, inboundAt: message.messageAt ?? at });

  if (message.type === 'system') {
    // Meta telling us about the user (a new number), not the user talking: no reply.
    const system = message.payload.message?.system as { type?: string; wa_id?: string } | undefined;
    if (system?.type === 'user_changed_number' && system.wa_id && /^\d{6,20}$/.test(system.wa_id)) {
      await changePhone(tx, contact.id, system.wa_id);
    }
    await markProcessed(tx, message.wamid, contact.id, at);
    return { accountId: contact.accountId, command: 'system', createdAccount: created };
  }
  const command = parseCommand(message.type, message.body);
  const answer = await answerFor(ctx, tx, command, contact.accountId, message);
  const text = created ? `${welcomeReply(granted)}\n\n${answer}` : answer;
  await enqueueReply(
    ctx.enqueue,
    { to: message.waUser, text, key: `reply:${message.wamid}`, replyTo: message.wamid, accountId: contact.accountId },
    { tx },
  );
  await markProcessed(tx, message.wamid, contact.id, at);
  ctx.log.info(
    { wamid: message.wamid, accountId: contact.accountId, command: command.kind, created },
    'message processed',
  );
  return { accountId: contact.accountId, command: command.kind, createdAccount: created };
}

async function answerFor(
  ctx: Ctx,
  tx: Queryable,
  command: Command,
  accountId: number,
  message: InboundMessage,
): Promise<string> {
  const { whatsapp } = ctx.services;
  switch (command.kind) {
    case 'balance':
      return balanceReply((await balanceOf(tx, accountId)) ?? 0);
    case 'topup':
      return topupReply(accountId, whatsapp.paymentLinkUrl);
    case 'help':
      return helpReply({ postCost: whatsapp.postCost, unknown: command.unknown });
    case 'unsupported':
      return unsupportedReply(command.type);
    case 'post_from_url':
    case 'post_on_topic': {
      if (command.kind === 'post_on_topic' && !ctx.services.blog.writer.writesTopics) {
        return "I can't write a post on a topic here: no language model is configured, so I can only write from a web page. Send me a link instead.";
      }
      // A first check, so nobody waits for a post they cannot pay for; blog.generate_post
      // reserves the credits for real.
      const balance = (await balanceOf(tx, accountId)) ?? 0;
      if (balance < whatsapp.postCost) return insufficientCreditsReply(balance, whatsapp.postCost);
      // The request id is the message's: one request (and one charge) per message, whatever the deliveries.
      const request = { requestId: message.wamid, accountId, to: message.waUser, replyTo: message.wamid };
      if (command.kind === 'post_from_url') {
        await ctx.enqueue('scraper.scrape_page', { ...request, url: command.url }, { tx });
        return `On it: reading ${command.url} and writing your post. I'll send you the link in a minute or two.`;
      }
      await ctx.enqueue('blog.generate_post', { ...request, topic: command.topic }, { tx });
      return `On it: writing a post about "${command.topic}". I'll send you the link in a minute or two.`;
    }
  }
}

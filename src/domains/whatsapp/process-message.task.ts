// whatsapp.process_message (keyed by the wamid): the sender's contact and account (identity.ts:
// created on first contact with the sign-up grant, ids linked or moved), the message marked read
// when we will answer it, the command acted on. Everything it changes and every
// task it enqueues (replies, follow-up work) is written in one transaction, so a re-run after a
// crash finds the message processed and does nothing twice.
import { z } from 'zod';
import type { Queryable } from '../../db/db.ts';
import { defineTask, type TaskContext } from '../../tasks/define-task.ts';
import { NonRetryableError } from '../../tasks/task-errors.ts';
import { balanceOf, balanceReply, insufficientCreditsReply, inTransaction, topupReply } from '../credits/index.ts';
import { type Command, helpReply, marksRead, parseCommand, unsupportedReply, welcomeReply } from './commands.ts';
import { applyIdentityChange, identityChangeOf, isBsuid, resolveContact, type Sender } from './identity.ts';
import { enqueueReply } from './replies.ts';
import { type InboundMessage, whatsappContacts, whatsappMessages } from './whatsapp.repository.ts';

export const processMessagePayload = z.object({ wamid: z.string().min(1).max(256) }).strict();

type Ctx = TaskContext<z.output<typeof processMessagePayload>>;

/** The sender as the webhook recorded them (rows older than the contact fields fall back on wa_user). */
function senderOfStored(message: InboundMessage): Sender {
  const contact = message.payload.contact;
  const sender: Sender = {
    phone: contact?.waId ?? null,
    bsuid: contact?.userId ?? null,
    name: contact?.name ?? null,
    username: contact?.username ?? null,
  };
  if (!sender.phone && !sender.bsuid) {
    if (isBsuid(message.waUser)) sender.bsuid = message.waUser;
    else sender.phone = message.waUser;
  }
  return sender;
}

export const processMessageTask = defineTask({
  name: 'whatsapp.process_message',
  queue: 'whatsapp',
  payload: processMessagePayload,
  idempotencyKey: (payload) => payload.wamid,
  deadlineSeconds: 60,
  async handler(ctx) {
    const { wamid } = ctx.payload;
    const message = await whatsappMessages.findInbound(ctx.db, wamid);
    if (!message) throw new NonRetryableError(`no inbound WhatsApp message ${wamid} was recorded`);
    if (message.status === 'processed') return { duplicate: true };

    const { api } = ctx.services.whatsapp;
    if (api && marksRead(message.type)) {
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
  const again = await whatsappMessages.findInbound(tx, message.wamid);
  if (again?.status === 'processed') return { duplicate: true };
  const { whatsapp } = ctx.services;
  const sender = senderOfStored(message);
  const inboundAt = message.messageAt ?? at;

  if (message.type === 'system') {
    // Meta telling us about the user (a new number, a new BSUID), not the user talking: no reply.
    const change = identityChangeOf(message.payload.message?.system);
    const contact = change ? await applyIdentityChange(tx, sender, change, { at, log: ctx.log }) : undefined;
    await whatsappMessages.markProcessed(tx, message.wamid, contact?.id ?? null, at);
    ctx.log.info(
      { wamid: message.wamid, accountId: contact?.accountId, change: change?.type },
      'system message processed',
    );
    return { accountId: contact?.accountId, command: 'system', change: change?.type ?? null };
  }

  const command = parseCommand(message.type, message.body);
  if (command.kind === 'none') {
    // A reaction (or its removal): recorded on the sender's contact if we know them, never answered.
    const found = await resolveContact(tx, sender, { at, log: ctx.log });
    if (found) await whatsappContacts.touch(tx, found.contact.id, { ...sender, inboundAt });
    await whatsappMessages.markProcessed(tx, message.wamid, found?.contact.id ?? null, at);
    return { accountId: found?.contact.accountId, command: command.kind };
  }

  const resolved = await resolveContact(tx, sender, {
    at,
    log: ctx.log,
    create: { signupCredits: whatsapp.signupCredits },
  });
  const { contact, created, granted } = resolved!;
  await whatsappContacts.touch(tx, contact.id, { ...sender, inboundAt });
  // The id the user wrote from; whatsapp.send_message turns it into the contact's current address.
  const to = message.waUser;
  const answer = await answerFor(ctx, tx, command, contact.accountId, message, to);
  const text = created ? `${welcomeReply(granted)}\n\n${answer}` : answer;
  await enqueueReply(
    ctx.enqueue,
    { to, text, key: `reply:${message.wamid}`, replyTo: message.wamid, accountId: contact.accountId },
    { tx },
  );
  await whatsappMessages.markProcessed(tx, message.wamid, contact.id, at);
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
  to: string,
): Promise<string> {
  const { whatsapp } = ctx.services;
  switch (command.kind) {
    case 'balance':
      return balanceReply((await balanceOf(tx, accountId)) ?? 0);
    case 'topup':
      return topupReply(accountId, whatsapp.paymentLinkUrl);
    case 'help':
      return helpReply({ postCost: whatsapp.postCost, unknown: command.unknown });
    case 'welcome':
      // A new user gets the welcome line before this (see respond); a known one, the list.
      return helpReply({ postCost: whatsapp.postCost, unknown: false });
    case 'unsupported':
      return unsupportedReply(command.type);
    case 'none':
      throw new Error('a message that asks for nothing has no answer');
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
      const request = { requestId: message.wamid, accountId, to, replyTo: message.wamid };
      if (command.kind === 'post_from_url') {
        await ctx.enqueue('scraper.scrape_page', { ...request, url: command.url }, { tx });
        return `On it: reading ${command.url} and writing your post. I'll send you the link in a minute or two.`;
      }
      await ctx.enqueue('blog.generate_post', { ...request, topic: command.topic }, { tx });
      return `On it: writing a post about "${command.topic}". I'll send you the link in a minute or two.`;
    }
  }
}

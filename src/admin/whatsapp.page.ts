// The dashboard's WhatsApp page: recent conversations (the latest messages, grouped per contact),
// the offline outbox (replies kept when no WHATSAPP_ACCESS_TOKEN is set), and one contact's whole
// conversation; every message with its direction, status and Meta's error. The recent messages and
// the outbox are the repository's queries, the same the CLI prints.
import type { FastifyInstance } from 'fastify';
import { type ConversationLine, whatsappMessages } from '../domains/whatsapp/index.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { sendPage } from './layout.ts';
import { field, operatorOf, utcTime } from './view.ts';
import { contactOfAccount, conversationPage } from './whatsapp.queries.ts';

/** How many of the latest messages the recent conversations are drawn from. */
export const RECENT_MESSAGES = 300;
export const CONVERSATION_PAGE_SIZE = 100;
const ACCOUNT_ID = /^[1-9]\d{0,15}$/;
const PAGE = { title: 'WhatsApp', active: '/admin/whatsapp' } as const;

/** Meta's error as stored: a Graph API error ({message, code, details}) or a status's errors array. */
export function errorText(error: unknown): string {
  if (error === null || error === undefined) return '';
  const one = (e: unknown): string => {
    if (!e || typeof e !== 'object') return String(e);
    const o = e as Record<string, unknown>;
    const code = o.code ?? o.httpStatus;
    const text = [o.title, o.message, (o.error_data as Record<string, unknown> | undefined)?.details ?? o.details]
      .filter((t) => typeof t === 'string' && t !== '')
      .filter((t, i, all) => all.indexOf(t) === i)
      .join(': ');
    return `${code !== undefined ? `${code} ` : ''}${text || JSON.stringify(e)}`;
  };
  return Array.isArray(error) ? error.map(one).join('; ') : one(error);
}

/** Meta's error; on a message that went out later (a retry or a replay), marked as an earlier attempt's. */
function errorCell(m: ConversationLine): SafeHtml | string {
  if (!m.error) return '';
  if (m.status === 'failed') return html`<span class="badge error">error</span> ${errorText(m.error)}`;
  return html`<span class="muted">an earlier attempt: ${errorText(m.error)}</span>`;
}

function messageRow(m: ConversationLine, withContact: boolean): SafeHtml {
  const contact = withContact
    ? html`<td>${m.accountId !== null ? html`<a href="/admin/whatsapp?account=${m.accountId}">${m.waUser}</a>` : m.waUser}</td>`
    : '';
  return html`<tr data-message="${m.id}" data-direction="${m.direction}" data-status="${m.status}">
<td>${utcTime(m.createdAt)}</td>${contact}
<td>${m.direction === 'in' ? 'in ←' : 'out →'}</td>
<td><span class="badge ${m.status}">${m.status}</span></td>
<td>${m.body ?? html`<span class="muted">[${m.type}]</span>`}</td>
<td>${errorCell(m)}</td></tr>`;
}

function messagesTable(name: string, lines: ConversationLine[], withContact: boolean): SafeHtml {
  return html`<table data-table="${name}">
<thead><tr><th scope="col">When</th>${withContact ? html`<th scope="col">Contact</th>` : ''}<th scope="col">Direction</th><th scope="col">Status</th><th scope="col">Message</th><th scope="col">Meta's error</th></tr></thead>
<tbody>${lines.map((m) => messageRow(m, withContact))}</tbody>
</table>`;
}

interface Conversation {
  key: string;
  waUser: string;
  accountId: number | null;
  messages: ConversationLine[];
}

/** The latest messages grouped per contact, the most recently active contact first. */
function groupByContact(lines: ConversationLine[]): Conversation[] {
  const byKey = new Map<string, Conversation>();
  for (const line of lines) {
    const key = line.accountId !== null ? `account:${line.accountId}` : `user:${line.waUser}`;
    let c = byKey.get(key);
    if (!c) {
      c = { key, waUser: line.waUser, accountId: line.accountId, messages: [] };
      byKey.set(key, c);
    }
    c.messages.push(line);
  }
  return [...byKey.values()];
}

export function whatsappPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/whatsapp', async (request, reply) => {
    const operator = operatorOf(request);
    const accountText = field(request.query, 'account');
    if (accountText !== undefined) {
      const contact = ACCOUNT_ID.test(accountText) ? await contactOfAccount(deps.db, Number(accountText)) : undefined;
      if (!contact) return reply.code(404).send('no WhatsApp contact for that account');
      const beforeText = field(request.query, 'before');
      const before = beforeText && ACCOUNT_ID.test(beforeText) ? Number(beforeText) : undefined;
      const lines = await conversationPage(deps.db, contact, { before, limit: CONVERSATION_PAGE_SIZE + 1 });
      const shown = lines.slice(0, CONVERSATION_PAGE_SIZE);
      const older =
        lines.length > CONVERSATION_PAGE_SIZE
          ? `/admin/whatsapp?account=${contact.account_id}&before=${shown[shown.length - 1]!.id}`
          : undefined;
      return sendPage(reply, {
        title: `Conversation with ${contact.profile_name ?? contact.phone ?? contact.bsuid ?? 'a contact'}`,
        active: '/admin/whatsapp',
        operator,
        body: html`<div class="panel"><dl class="kv">
<dt>Account</dt><dd><a href="/admin/accounts/${contact.account_id}">${contact.account_id}</a></dd>
<dt>Phone</dt><dd>${contact.phone ?? '–'}</dd><dt>BSUID</dt><dd><code>${contact.bsuid ?? '–'}</code></dd>
<dt>Last message from them</dt><dd>${utcTime(contact.last_inbound_at)}</dd></dl></div>
<div class="panel">${messagesTable('conversation', shown, false)}
${shown.length === 0 ? html`<p class="muted">No messages.</p>` : ''}
<nav class="pager" aria-label="Pages"><a href="/admin/whatsapp">All conversations</a>${before !== undefined ? html`<a href="/admin/whatsapp?account=${contact.account_id}">Newest</a>` : ''}${older ? html`<a href="${older}" rel="next">Older messages</a>` : ''}</nav></div>`,
      });
    }

    const [recent, outbox] = await Promise.all([
      whatsappMessages.recent(deps.db, { limit: RECENT_MESSAGES }),
      whatsappMessages.offlineOutbox(deps.db, 50),
    ]);
    const conversations = groupByContact(recent);
    return sendPage(reply, {
      ...PAGE,
      operator,
      body: html`<h2>Recent conversations</h2>
<div class="panel">
<table data-table="conversations">
<thead><tr><th scope="col">Contact</th><th scope="col">Account</th><th scope="col">Last message</th><th scope="col">Latest</th><th scope="col">Status</th><th scope="col" class="num">Recent messages</th></tr></thead>
<tbody>${conversations.map((c) => {
        const last = c.messages[0]!;
        return html`<tr data-contact="${c.waUser}"><th scope="row">${c.accountId !== null ? html`<a href="/admin/whatsapp?account=${c.accountId}">${c.waUser}</a>` : c.waUser}</th>
<td>${c.accountId !== null ? html`<a href="/admin/accounts/${c.accountId}">${c.accountId}</a>` : '–'}</td>
<td>${utcTime(last.createdAt)}</td><td>${last.direction === 'in' ? '← ' : '→ '}${last.body ?? `[${last.type}]`}</td>
<td><span class="badge ${last.status}">${last.status}</span> ${errorCell(last)}</td><td class="num">${c.messages.length}</td></tr>`;
      })}</tbody>
</table>
${conversations.length === 0 ? html`<p class="muted">No messages yet.</p>` : html`<p class="muted">The contacts of the latest ${RECENT_MESSAGES} messages; open one for the whole conversation.</p>`}
</div>
<h2>Latest messages</h2>
<div class="panel">${messagesTable('messages', recent.slice(0, 50), true)}</div>
<h2>Offline outbox</h2>
<div class="panel">
${
  outbox.length === 0
    ? html`<p class="muted">Empty. Replies are kept here instead of being sent when WHATSAPP_ACCESS_TOKEN is unset.</p>`
    : messagesTable('offline-outbox', outbox, true)
}
</div>`,
    });
  });
}

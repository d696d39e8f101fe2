// The dashboard's accounts: the list (newest first, keyset pages, found by account id, phone or
// BSUID), the Stripe payments that matched no account, and an account's page with its balance, its
// ledger (newest first) and an operator's adjustment. The adjustment is the credits service's
// adjust(), the one the CLI's `credits grant` calls; the form carries an idempotency key drawn when
// it was rendered, so a double submit applies once, and the ledger entry and its audit event are
// written in one transaction.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { auditEvents } from '../domains/audit/index.ts';
import { adjust, InsufficientCreditsError, UnknownAccountError } from '../domains/credits/index.ts';
import {
  type AccountRow,
  findAccount,
  ledgerPage,
  listAccounts,
  parseAccountSearch,
  unmatchedPayments,
} from './accounts.queries.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, sendPage } from './layout.ts';
import type { Operator } from './operator.ts';
import { field, formatNumber, operatorOf, redirectWithFlash, takeFlash, utcTime } from './view.ts';

export const ACCOUNTS_PAGE_SIZE = 50;
export const LEDGER_PAGE_SIZE = 50;
const REASON_MAX = 500;
const ACCOUNT_ID = /^[1-9]\d{0,15}$/;
const CURSOR_ID = /^[1-9]\d{0,15}$/;
const ADJUSTMENT_KEY = /^[A-Za-z0-9-]{16,64}$/;
const PAGE = { title: 'Accounts', active: '/admin/accounts' } as const;

function signed(n: number): string {
  return `${n > 0 ? '+' : ''}${formatNumber(n)}`;
}

function contactCells(a: AccountRow): SafeHtml {
  return html`<td>${a.phone ?? html`<span class="muted">–</span>`}</td><td><code>${a.bsuid ?? ''}</code></td><td>${a.profile_name ?? ''}</td>`;
}

async function listPage(deps: DashboardDeps, request: FastifyRequest, reply: FastifyReply) {
  const operator = operatorOf(request);
  const query = request.query as Record<string, unknown>;
  const q = field(query, 'q');
  const afterText = field(query, 'after');
  const after = afterText && CURSOR_ID.test(afterText) ? Number(afterText) : undefined;
  const rows = await listAccounts(deps.db, {
    after,
    search: q ? parseAccountSearch(q) : undefined,
    limit: ACCOUNTS_PAGE_SIZE + 1,
  });
  const more = rows.length > ACCOUNTS_PAGE_SIZE;
  const shown = rows.slice(0, ACCOUNTS_PAGE_SIZE);
  const unmatched = await unmatchedPayments(deps.db, { limit: 50 });
  const next = more && !q ? `/admin/accounts?after=${shown[shown.length - 1]!.id}` : undefined;
  return sendPage(reply, {
    ...PAGE,
    operator,
    flash: takeFlash(request, reply),
    body: html`<form class="filters" method="get" action="/admin/accounts" role="search">
<label>Account id, phone or BSUID <input type="search" name="q" value="${q ?? ''}"></label>
<button type="submit">Search</button>${q ? html` <a class="button secondary" href="/admin/accounts">Clear</a>` : ''}
</form>
<div class="panel">
<table data-table="accounts">
<thead><tr><th scope="col">Account</th><th scope="col">Phone</th><th scope="col">BSUID</th><th scope="col">Name</th><th scope="col">Plan</th><th scope="col" class="num">Balance</th><th scope="col">Created</th></tr></thead>
<tbody>${shown.map(
      (
        a,
      ) => html`<tr data-account="${a.id}"><th scope="row"><a href="/admin/accounts/${a.id}">${a.id}</a></th>${contactCells(a)}
<td>${a.plan ?? html`<span class="muted">none</span>`}</td><td class="num" data-balance="${a.balance}">${formatNumber(a.balance)}</td><td>${utcTime(a.created_at)}</td></tr>`,
    )}</tbody>
</table>
${shown.length === 0 ? html`<p class="muted">${q ? 'No account has that id, phone number or BSUID.' : 'No accounts yet.'}</p>` : ''}
${next ? html`<nav class="pager" aria-label="Pages"><a href="/admin/accounts">Newest</a><a href="${next}" rel="next">Older accounts</a></nav>` : ''}
</div>
<h2>Stripe payments that matched no account</h2>
<div class="panel">
${
  unmatched.length === 0
    ? html`<p class="muted">None: every paid session named an account that exists.</p>`
    : html`<table data-table="unmatched-payments">
<thead><tr><th scope="col">Received</th><th scope="col">Event</th><th scope="col">Session or payment</th><th scope="col">client_reference_id</th><th scope="col" class="num">Amount</th><th scope="col">Why</th></tr></thead>
<tbody>${unmatched.map(
        (
          p,
        ) => html`<tr data-event="${p.event_id}"><td>${utcTime(p.created_at)}</td><td><code>${p.event_id}</code></td><td><code>${p.object_id}</code></td><td><code>${p.client_reference_id ?? ''}</code></td>
<td class="num">${p.amount_total === null ? '' : `${(Number(p.amount_total) / 100).toFixed(2)} ${(p.currency ?? '').toUpperCase()}`}</td><td>${p.reason}</td></tr>`,
      )}</tbody>
</table>
<p class="muted">To credit one, find the buyer's account and add the credits with an adjustment naming the payment.</p>`
}
</div>`,
  });
}

interface AdjustForm {
  amount: string;
  reason: string;
  key: string;
}

interface AccountPageInput {
  account: AccountRow;
  operator: Operator;
  before: number | undefined;
  form: AdjustForm;
  problem?: string | undefined;
  flash?: { text: string; error?: boolean } | undefined;
}

async function accountPage(deps: DashboardDeps, reply: FastifyReply, input: AccountPageInput, status = 200) {
  const { account: a, operator, form } = input;
  const entries = await ledgerPage(deps.db, a.id, { before: input.before, limit: LEDGER_PAGE_SIZE + 1 });
  const more = entries.length > LEDGER_PAGE_SIZE;
  const shown = entries.slice(0, LEDGER_PAGE_SIZE);
  const olderHref = more ? `/admin/accounts/${a.id}?before=${shown[shown.length - 1]!.id}` : undefined;
  return sendPage(
    reply,
    {
      title: `Account ${a.id}`,
      active: '/admin/accounts',
      operator,
      flash: input.flash,
      body: html`<div class="grid">
<div class="panel"><dl class="kv">
<dt>Balance</dt><dd class="stat" data-balance="${a.balance}">${formatNumber(a.balance)}</dd>
<dt>Plan</dt><dd>${a.plan ?? 'none'}${a.monthly_credits ? ` (${formatNumber(a.monthly_credits)} credits a month)` : ''}</dd>
<dt>Phone</dt><dd>${a.phone ?? '–'}</dd>
<dt>BSUID</dt><dd><code>${a.bsuid ?? '–'}</code></dd>
<dt>Name</dt><dd>${a.profile_name ?? '–'}</dd>
<dt>Created</dt><dd>${utcTime(a.created_at)}</dd>
<dt>Last message</dt><dd>${utcTime(a.last_inbound_at)}</dd>
</dl>
<p><a href="/admin/whatsapp?account=${a.id}">Conversation</a> · <a href="/admin/posts?account=${a.id}">Posts</a></p></div>
<div class="panel">
<h2>Adjust the balance</h2>
${input.problem ? html`<p class="flash error" role="alert">${input.problem}</p>` : ''}
<form method="post" action="/admin/accounts/${a.id}/adjust" data-form="adjust">
${csrfField(operator)}<input type="hidden" name="key" value="${form.key}">
<p><label>Amount (credits; negative removes) <input type="number" name="amount" step="1" required value="${form.amount}"></label></p>
<p><label>Reason (kept in the ledger) <input type="text" name="reason" required maxlength="${REASON_MAX}" size="40" value="${form.reason}"></label></p>
<p><button type="submit">Apply adjustment</button></p>
</form>
<p class="muted">A removal the balance cannot cover is refused. Submitting this form twice applies it once.</p>
</div>
</div>
<h2>Ledger</h2>
<div class="panel">
<table data-table="ledger">
<thead><tr><th scope="col" class="num">Entry</th><th scope="col">When</th><th scope="col">Kind</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Balance after</th><th scope="col">Key</th><th scope="col">Source or reason</th></tr></thead>
<tbody>${shown.map(
        (
          e,
        ) => html`<tr data-entry="${e.id}" data-kind="${e.kind}"><td class="num">${e.id}</td><td>${utcTime(e.created_at)}</td><td><span class="badge">${e.kind}</span></td>
<td class="num">${signed(e.amount)}</td><td class="num">${formatNumber(e.balance_after)}</td><td><code>${e.idempotency_key}</code></td><td>${e.source_ref ?? ''}</td></tr>`,
      )}</tbody>
</table>
${shown.length === 0 ? html`<p class="muted">No movements yet.</p>` : ''}
${input.before !== undefined || olderHref ? html`<nav class="pager" aria-label="Pages"><a href="/admin/accounts/${a.id}">Newest</a>${olderHref ? html`<a href="${olderHref}" rel="next">Older entries</a>` : ''}</nav>` : ''}
</div>`,
    },
    status,
  );
}

function newForm(): AdjustForm {
  return { amount: '', reason: '', key: randomUUID() };
}

export function accountsPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/accounts', (request, reply) => listPage(deps, request, reply));

  scope.get<{ Params: { id: string } }>('/accounts/:id', async (request, reply) => {
    const { id } = request.params;
    const account = ACCOUNT_ID.test(id) ? await findAccount(deps.db, Number(id)) : undefined;
    if (!account) return reply.code(404).send('no such account');
    const beforeText = field(request.query, 'before');
    return accountPage(deps, reply, {
      account,
      operator: operatorOf(request),
      before: beforeText && CURSOR_ID.test(beforeText) ? Number(beforeText) : undefined,
      form: newForm(),
      flash: takeFlash(request, reply),
    });
  });

  scope.post<{ Params: { id: string } }>('/accounts/:id/adjust', async (request, reply) => {
    const { id } = request.params;
    const account = ACCOUNT_ID.test(id) ? await findAccount(deps.db, Number(id)) : undefined;
    if (!account) return reply.code(404).send('no such account');
    const operator = operatorOf(request);
    const body = request.body;
    const form: AdjustForm = {
      amount: field(body, 'amount') ?? '',
      reason: field(body, 'reason') ?? '',
      key: field(body, 'key') ?? '',
    };
    const refuse = (problem: string, status = 422) =>
      accountPage(deps, reply, { account, operator, before: undefined, form, problem }, status);
    if (!ADJUSTMENT_KEY.test(form.key)) {
      // A form this page did not render: nothing to apply; a fresh key for the next try.
      form.key = randomUUID();
      return refuse(
        'This form is missing its idempotency key; nothing was changed. Check the values and submit again.',
      );
    }
    if (!/^-?\d{1,9}$/.test(form.amount) || Number(form.amount) === 0) {
      return refuse('The amount must be a whole number of credits other than 0 (negative removes credits).');
    }
    if (form.reason === '') return refuse('An adjustment needs a reason.');
    if (form.reason.length > REASON_MAX) return refuse(`The reason is longer than ${REASON_MAX} characters.`);
    const amount = Number(form.amount);
    const at = new Date(deps.clock.now());
    try {
      const movement = await deps.db.transaction(async (tx) => {
        const m = await adjust(tx, { accountId: account.id, amount, reason: form.reason, key: form.key, at });
        // Only the submit that wrote the entry is an action; a repeat changed nothing.
        if (m.applied) {
          await auditEvents.append(tx, {
            at,
            actor: operator.email,
            action: 'credits.adjust',
            target: `account:${account.id}`,
            detail: { accountId: account.id, amount, reason: form.reason, entryId: m.entryId, balance: m.balance },
          });
        }
        return m;
      });
      return redirectWithFlash(
        reply,
        `/admin/accounts/${account.id}`,
        movement.applied
          ? `Adjustment applied: ${signed(amount)} credits; balance ${formatNumber(movement.balance)} (entry ${movement.entryId}).`
          : `This adjustment was already applied (entry ${movement.entryId}); nothing changed. Balance ${formatNumber(movement.balance)}.`,
      );
    } catch (err) {
      if (err instanceof InsufficientCreditsError) {
        return refuse(
          `Refused: the balance is ${formatNumber(err.balance)}, which cannot cover removing ${formatNumber(err.needed)}. Nothing was changed.`,
        );
      }
      if (err instanceof UnknownAccountError) return reply.code(404).send('no such account');
      // The key was used for another amount: this form was applied before with other values.
      if (err instanceof Error && /was used for/.test(err.message)) {
        form.key = randomUUID();
        return refuse(
          'This form was already applied with other values; nothing was changed. Submit again to apply these.',
          409,
        );
      }
      throw err;
    }
  });
}

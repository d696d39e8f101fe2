// The dashboard's audit trail (/admin/audit): what operators did, newest first, in keyset pages.
import type { FastifyInstance } from 'fastify';
import { auditEvents } from '../domains/audit/index.ts';
import type { DashboardDeps } from './deps.ts';
import { html } from './html.ts';
import { sendPage } from './layout.ts';
import { operatorOf, utcTime } from './view.ts';

const PAGE_SIZE = 50;
// The cursor is the (at, id) of the last row shown: at as an ISO time (stored to the millisecond).
const CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)~(\d{1,15})$/;

export function auditPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get<{ Querystring: { after?: string } }>('/audit', async (request, reply) => {
    const m = CURSOR.exec(typeof request.query.after === 'string' ? request.query.after : '');
    const before = m ? { at: new Date(m[1]!), id: Number(m[2]) } : undefined;
    const rows = await auditEvents.list(deps.db, { before, limit: PAGE_SIZE + 1 });
    const page = rows.slice(0, PAGE_SIZE);
    const last = page.at(-1);
    const next =
      rows.length > PAGE_SIZE && last
        ? `/admin/audit?after=${encodeURIComponent(`${last.at.toISOString()}~${last.id}`)}`
        : undefined;
    const table = page.length
      ? html`<table aria-label="Audit events">
<thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">On</th><th scope="col">Detail</th></tr></thead>
<tbody>${page.map(
          (e) =>
            html`<tr data-audit-id="${e.id}" data-action="${e.action}"><td>${utcTime(e.at)}</td><td>${e.actor}</td><td><code>${e.action}</code></td><td>${
              e.action === 'run.replay' && e.target && /^\d+$/.test(e.target)
                ? html`<a href="/admin/runs/${e.target}">run #${e.target}</a>`
                : (e.target ?? '–')
            }</td><td class="mono">${Object.keys(e.detail ?? {}).length ? JSON.stringify(e.detail) : ''}</td></tr>`,
        )}</tbody></table>`
      : html`<p class="muted">No operator action recorded${before ? ' before this point' : ' yet'}.</p>`;
    return sendPage(reply, {
      title: 'Audit trail',
      active: '/admin/audit',
      operator: operatorOf(request),
      body: html`<p>Every operator action (login, logout, replay, purge, pause, resume, run now, credit adjustment): who, when and on what, newest first.</p>
<div class="panel">${table}</div>
<nav class="pager" aria-label="Pages">${before ? html`<a href="/admin/audit">Newest</a>` : ''}${next ? html`<a rel="next" href="${next}">Next page</a>` : html`<span class="muted">End of the trail.</span>`}</nav>`,
    });
  });
}

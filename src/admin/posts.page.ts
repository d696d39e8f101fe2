// The dashboard's posts: published posts newest first (keyset pages), or one account's, each with
// its link, source (a page or a topic), account, time, the model that wrote it (or the offline
// writer), tokens and cost.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';
import { html } from './html.ts';
import { sendPage } from './layout.ts';
import { postsPage } from './posts.queries.ts';
import { field, formatNumber, operatorOf, utcTime } from './view.ts';

export const POSTS_PAGE_SIZE = 50;
const ID = /^[1-9]\d{0,15}$/;

/** Micro-dollars as dollars, to a hundredth of a cent when small. */
function cost(micros: number): string {
  if (micros === 0) return '–';
  const dollars = micros / 1_000_000;
  return `$${dollars < 0.01 ? dollars.toFixed(4) : dollars.toFixed(2)}`;
}

export function postsPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/posts', async (request, reply) => {
    const operator = operatorOf(request);
    const accountText = field(request.query, 'account');
    const beforeText = field(request.query, 'before');
    const accountId = accountText && ID.test(accountText) ? Number(accountText) : undefined;
    const before = beforeText && ID.test(beforeText) ? Number(beforeText) : undefined;
    const rows = await postsPage(deps.db, { accountId, before, limit: POSTS_PAGE_SIZE + 1 });
    const shown = rows.slice(0, POSTS_PAGE_SIZE);
    const base = accountId !== undefined ? `/admin/posts?account=${accountId}` : '/admin/posts';
    const older =
      rows.length > POSTS_PAGE_SIZE
        ? `${base}${accountId !== undefined ? '&' : '?'}before=${shown[shown.length - 1]!.id}`
        : undefined;
    return sendPage(reply, {
      title: accountId !== undefined ? `Posts of account ${accountId}` : 'Posts',
      active: '/admin/posts',
      operator,
      body: html`<div class="panel">
<table data-table="posts">
<thead><tr><th scope="col">Title</th><th scope="col">Source</th><th scope="col">Account</th><th scope="col">Created</th><th scope="col">Writer</th><th scope="col" class="num">Tokens (prompt + completion)</th><th scope="col" class="num">Cost</th><th scope="col" class="num">Credits</th></tr></thead>
<tbody>${shown.map(
        (
          p,
        ) => html`<tr data-post="${p.slug}"><th scope="row"><a href="/posts/${encodeURIComponent(p.slug)}">${p.title}</a></th>
<td>${
          p.source_url
            ? /^https?:\/\//i.test(p.source_url)
              ? html`<a href="${p.source_url}" rel="noreferrer noopener">${p.source_url}</a>`
              : p.source_url
            : html`<span class="muted">topic:</span> ${p.topic ?? ''}`
        }</td>
<td><a href="/admin/accounts/${p.account_id}">${p.account_id}</a></td><td>${utcTime(p.created_at)}</td>
<td>${p.offline ? html`<span class="badge">offline</span>` : html`<code>${p.model}</code>`}</td>
<td class="num">${p.prompt_tokens || p.completion_tokens ? `${formatNumber(p.prompt_tokens)} + ${formatNumber(p.completion_tokens)}` : '–'}</td>
<td class="num">${cost(p.cost_micros)}</td><td class="num">${p.credits}</td></tr>`,
      )}</tbody>
</table>
${shown.length === 0 ? html`<p class="muted">No posts yet.</p>` : ''}
<nav class="pager" aria-label="Pages">${before !== undefined ? html`<a href="${base}">Newest</a>` : ''}${older ? html`<a href="${older}" rel="next">Older posts</a>` : ''}${accountId !== undefined ? html`<a href="/admin/posts">All posts</a>` : ''}</nav>
</div>`,
    });
  });
}

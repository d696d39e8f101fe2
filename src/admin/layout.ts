// The dashboard's page shell: one inline stylesheet (allowed by its hash in DASHBOARD_CSP), the
// navigation, the operator's name and logout, and the notice when the dashboard is open to the
// local machine without a login. Pages give their body as SafeHtml; see html.ts.
import { createHash } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { html, raw, type SafeHtml } from './html.ts';
import type { Operator } from './operator.ts';

const CSS = `
:root { color-scheme: light dark; --fg: #1b1c1e; --muted: #5f6368; --bg: #f7f7f5; --panel: #fff; --rule: #e2e2de;
  --link: #0b57d0; --accent: #0b57d0; --ok: #137333; --warn: #b06000; --bad: #c5221f; --info: #5f6368; --chip: #eeeeea;
  --c-ok: #1e8e3e; --c-warn: #e37400; --c-bad: #d93025; --c-bad-soft: #f4a49d; --c-blue: #1a73e8; --c-blue-soft: #9cc0f5; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e6e3; --muted: #a8a6a1; --bg: #131312; --panel: #1c1c1b; --rule: #33322f; --link: #8ab4f8;
    --accent: #8ab4f8; --ok: #81c995; --warn: #fdd663; --bad: #f28b82; --info: #a8a6a1; --chip: #2a2a28;
    --c-ok: #5bb974; --c-warn: #fa903e; --c-bad: #ee675c; --c-bad-soft: #8e3b34; --c-blue: #669df6; --c-blue-soft: #33578f; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 0.9375rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color: var(--link); text-underline-offset: 0.15em; }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 0.25rem 1rem; padding: 0.6rem 1.25rem; background: var(--panel); border-bottom: 1px solid var(--rule); }
header.top .brand { font-weight: 650; margin-right: 0.5rem; color: var(--fg); text-decoration: none; }
nav.main { display: flex; flex-wrap: wrap; gap: 0.15rem; flex: 1; }
nav.main a { padding: 0.3rem 0.6rem; border-radius: 6px; text-decoration: none; color: var(--fg); }
nav.main a[aria-current="page"] { background: var(--chip); font-weight: 600; }
.who { display: flex; align-items: center; gap: 0.6rem; color: var(--muted); font-size: 0.875rem; }
.notice { margin: 0; padding: 0.5rem 1.25rem; background: #fef7e0; color: #5c3c00; border-bottom: 1px solid #f3d48a; font-size: 0.875rem; }
@media (prefers-color-scheme: dark) { .notice { background: #3a2f12; color: #fdd663; border-color: #5c4a1a; } }
main { padding: 1.25rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.75rem 0 0.6rem; }
.panel { background: var(--panel); border: 1px solid var(--rule); border-radius: 8px; padding: 1rem; margin-bottom: 1rem; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.875rem; }
th, td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { font-weight: 600; color: var(--muted); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
time { white-space: nowrap; }
tr:last-child td, tr:last-child th { border-bottom: 0; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: 0.8125rem; padding: 0 0.6rem 0.5rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.8125rem; }
pre { background: var(--chip); padding: 0.75rem; border-radius: 6px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; margin: 0; }
.badge { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 999px; font-size: 0.75rem; font-weight: 600; background: var(--chip); white-space: nowrap; }
.badge.ok, .badge.succeeded, .badge.delivered, .badge.read, .badge.sent, .badge.running-queue { color: var(--ok); }
.badge.failed, .badge.retry, .badge.degraded, .badge.paused, .badge.busy { color: var(--warn); }
.badge.dead, .badge.down, .badge.error { color: var(--bad); }
.badge.running, .badge.queued, .badge.accepted { color: var(--accent); }
.muted { color: var(--muted); }
form.filters { display: flex; flex-wrap: wrap; gap: 0.5rem 0.75rem; align-items: end; margin-bottom: 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: 0.8125rem; color: var(--muted); gap: 0.2rem; }
form.filters input, form.filters select { height: 2.1rem; }
input, select, textarea, button { font: inherit; color: inherit; }
input, select, textarea { background: var(--panel); border: 1px solid var(--rule); border-radius: 6px; padding: 0.3rem 0.5rem; }
button, .button { display: inline-block; background: var(--accent); color: #fff; border: 0; border-radius: 6px; padding: 0.35rem 0.8rem; cursor: pointer; text-decoration: none; font-size: 0.875rem; }
@media (prefers-color-scheme: dark) { button, .button { color: #131312; } }
button.secondary, .button.secondary { background: var(--chip); color: var(--fg); }
button.danger { background: var(--bad); }
form.inline { display: inline; margin: 0; }
table.compact td, table.compact th { white-space: nowrap; vertical-align: middle; }
td.actions button, td.actions .button { padding: 0.15rem 0.6rem; font-size: 0.8125rem; }
.pager { display: flex; gap: 0.75rem; margin-top: 0.75rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
.stat { font-size: 1.6rem; font-weight: 650; font-variant-numeric: tabular-nums; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
.flash { padding: 0.6rem 0.9rem; border-radius: 6px; background: var(--chip); margin-bottom: 1rem; }
.flash.error { color: var(--bad); }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { fill: var(--muted); font-size: 12px; }
svg.chart text.figure { fill: var(--fg); }
svg.chart .axis { stroke: var(--rule); }
svg.chart .s-succeeded { fill: var(--c-ok); }
svg.chart .s-failed { fill: var(--c-warn); }
svg.chart .s-dead, svg.chart .s-hour { fill: var(--c-bad); }
svg.chart .s-day { fill: var(--c-bad-soft); }
svg.chart .s-p50 { fill: var(--c-blue); }
svg.chart .s-p95 { fill: var(--c-blue-soft); }
.panel > h2:first-child { margin-top: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 0 1rem; }
`;

/**
 * Only the one inline stylesheet may apply (by hash, so an injected <style> would not); no script,
 * no images from anywhere (charts are inline SVG); forms post only to this origin; no framing.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(CSS).digest('base64')}'`,
  "img-src 'self' data:",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const NAV = [
  ['/admin', 'Overview'],
  ['/admin/runs', 'Runs'],
  ['/admin/queues', 'Queues'],
  ['/admin/schedules', 'Schedules'],
  ['/admin/outbox', 'Outbox'],
  ['/admin/health', 'Health'],
  ['/admin/accounts', 'Accounts'],
  ['/admin/whatsapp', 'WhatsApp'],
  ['/admin/posts', 'Posts'],
  ['/admin/audit', 'Audit'],
] as const;

export type NavPath = (typeof NAV)[number][0];

export interface PageInput {
  title: string;
  /** The navigation entry to mark as current. */
  active: NavPath;
  operator: { email: string; via: 'session' | 'loopback'; csrfToken: string };
  body: SafeHtml;
  /** A message shown above the body (after an action). */
  flash?: { text: string; error?: boolean } | undefined;
}

/** The hidden field every state-changing form carries. */
export function csrfField(operator: Operator | PageInput['operator']): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${operator.csrfToken}">`;
}

export function renderPage(page: PageInput): string {
  const { operator } = page;
  const nav = NAV.map(
    ([href, label]) => html`<a href="${href}"${href === page.active ? raw(' aria-current="page"') : ''}>${label}</a>`,
  );
  const who =
    operator.via === 'session'
      ? html`<span>${operator.email}</span>
          <form class="inline" method="post" action="/auth/logout">${csrfField(operator)}<button class="secondary" type="submit">Log out</button></form>`
      : html`<span>local access</span>`;
  const notice =
    operator.via === 'loopback'
      ? html`<p class="notice" role="note">No login is configured: this dashboard is open to clients on this machine only (loopback). Set OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET and ADMIN_EMAILS to require a login.</p>`
      : '';
  const flash = page.flash
    ? html`<p class="flash${page.flash.error ? ' error' : ''}" role="status">${page.flash.text}</p>`
    : '';
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${page.title} · backend</title>
<style>${raw(CSS)}</style>
</head>
<body>
<header class="top"><a class="brand" href="/admin">backend</a><nav class="main" aria-label="Dashboard">${nav}</nav><div class="who">${who}</div></header>
${notice}
<main>
<h1>${page.title}</h1>
${flash}
${page.body}
</main>
</body>
</html>
`.value;
}

/** Sends a dashboard page with its security headers; never cached, never framed. */
export function sendPage(reply: FastifyReply, page: PageInput, status = 200): FastifyReply {
  return withPageHeaders(reply, status).send(renderPage(page));
}

/** The headers of every dashboard page: HTML, the strict CSP, never sniffed, framed or cached. */
function withPageHeaders(reply: FastifyReply, status: number): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header('cache-control', 'no-store');
}

/** A page outside the dashboard's shell (login refused, access closed): title, text, one link. */
export function sendMessagePage(
  reply: FastifyReply,
  status: number,
  message: { title: string; text: string; link?: { href: string; label: string } | undefined },
): FastifyReply {
  const link = message.link ? html`<p><a class="button" href="${message.link.href}">${message.link.label}</a></p>` : '';
  const body = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${message.title} · backend</title>
<style>${raw(CSS)}</style>
</head>
<body>
<main>
<div class="panel" role="main">
<h1>${message.title}</h1>
<p>${message.text}</p>
${link}
</div>
</main>
</body>
</html>
`.value;
  return withPageHeaders(reply, status).send(body);
}

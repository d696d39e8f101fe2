// The dashboard's health history (/admin/health): the latest scheduled health checks, each probe's
// outcome and latency, newest first.
import type { FastifyInstance } from 'fastify';
import type { ProbeResult } from '../domains/health/index.ts';
import type { DashboardDeps } from './deps.ts';
import { html } from './html.ts';
import { sendPage } from './layout.ts';
import { HEALTH_HISTORY } from './runs.queries.ts';
import { badge, duration, operatorOf, utcTime } from './view.ts';

const SHOWN = 100;

interface HealthRow {
  id: number | string;
  run_key: string;
  status: string;
  checks: ProbeResult[];
  checked_at: Date;
}

export function healthPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/health', async (request, reply) => {
    const { rows } = await deps.db.query<HealthRow>(HEALTH_HISTORY, [SHOWN]);
    // One column per probe seen in this window, in the order they first appear.
    const probes = [...new Set(rows.flatMap((r) => (Array.isArray(r.checks) ? r.checks.map((c) => c.name) : [])))];
    const table = rows.length
      ? html`<table aria-label="Health checks">
<thead><tr><th scope="col">Checked</th><th scope="col">Status</th>${probes.map((p) => html`<th scope="col">${p}</th>`)}</tr></thead>
<tbody>${rows.map((r) => {
          const byName = new Map((Array.isArray(r.checks) ? r.checks : []).map((c) => [c.name, c]));
          return html`<tr data-status="${r.status}"><td>${utcTime(r.checked_at)}</td><td>${badge(r.status)}</td>${probes.map(
            (p) => {
              const c = byName.get(p);
              if (!c) return html`<td class="muted">–</td>`;
              return html`<td data-probe="${p}" data-ok="${String(c.ok)}">${badge(c.ok ? 'ok' : 'down')} <span class="muted">${duration(c.latencyMs)}</span>${c.error ? html`<br><span>${c.error}</span>` : ''}</td>`;
            },
          )}</tr>`;
        })}</tbody></table>`
      : html`<p class="muted">No health check has run yet (the health.check schedule runs it, or <code>npx backend enqueue health.check '{}'</code>).</p>`;
    return sendPage(reply, {
      title: 'Health history',
      active: '/admin/health',
      operator: operatorOf(request),
      body: html`<p>The latest ${SHOWN} scheduled health checks, newest first: each dependency's outcome and how long its probe took.</p>
<div class="panel">${table}</div>`,
    });
  });
}

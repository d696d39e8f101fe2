// The dashboard's outbox (/admin/outbox): the transactional outbox rows still waiting to be sent to
// Cloud Tasks, oldest first, with why each waits (send attempts, last error, age). A parked row
// (too many failed sends, or one Cloud Tasks refused as malformed) is marked apart: the relay no
// longer sends it until an operator re-sends or drops it with `backend outbox resend|drop`.
import type { FastifyInstance } from 'fastify';
import type { OutboxRow } from '../tasks/outbox.repository.ts';
import { MAX_SEND_ATTEMPTS } from '../tasks/outbox-relay.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { sendPage } from './layout.ts';
import { OUTBOX_DEPTH, OUTBOX_ROWS } from './runs.queries.ts';
import { duration, formatNumber, operatorOf, utcTime } from './view.ts';

const SHOWN = 200;

/** Why a row is still here, in words. */
function why(row: OutboxRow, ageMs: number): SafeHtml | string {
  if (row.parked_at)
    return html`parked after ${row.send_attempts} failed send${row.send_attempts === 1 ? '' : 's'}, at ${utcTime(row.parked_at)}: the relay no longer sends it`;
  if (row.last_error) {
    return row.next_attempt_at
      ? html`sending failed ${row.send_attempts}× (the relay retries it at ${utcTime(row.next_attempt_at)})`
      : `sending failed ${row.send_attempts}× (the relay retries it)`;
  }
  if (row.send_attempts > 0) return `tried ${row.send_attempts}×, no error recorded`;
  return ageMs < 60_000
    ? 'just written: the relay sends it after its transaction commits'
    : 'not sent yet: is the relay running?';
}

export function outboxPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/outbox', async (request, reply) => {
    const now = deps.clock.now();
    const [depth, rows] = await Promise.all([
      deps.db.query<{ n: number; parked: number; oldest: Date | null }>(OUTBOX_DEPTH),
      deps.db.query<OutboxRow>(OUTBOX_ROWS, [SHOWN]),
    ]);
    const n = depth.rows[0]?.n ?? 0;
    const parked = depth.rows[0]?.parked ?? 0;
    const table = rows.rows.length
      ? html`<table aria-label="Outbox rows waiting">
<thead><tr><th scope="col">Row</th><th scope="col">Task</th><th scope="col">Queue</th><th scope="col">Idempotency key</th><th scope="col">Written</th><th scope="col" class="num">Age</th><th scope="col" class="num">Send attempts</th><th scope="col">Why it waits</th><th scope="col">Last error</th></tr></thead>
<tbody>${rows.rows.map((r) => {
          const age = now - new Date(r.created_at).getTime();
          return html`<tr data-outbox-id="${r.id}"${r.parked_at ? html` data-parked="true"` : ''}><td>${r.id}${r.parked_at ? html` <span class="badge dead">parked</span>` : ''}</td><td>${r.task}</td><td>${r.queue}</td><td class="mono">${r.idempotency_key}</td><td>${utcTime(r.created_at)}</td><td class="num">${duration(Math.max(0, age))}</td><td class="num">${r.send_attempts}</td><td>${why(r, age)}${r.schedule_time ? html`<br><span class="muted">scheduled for ${utcTime(r.schedule_time)}</span>` : ''}</td><td>${r.last_error ?? ''}</td></tr>`;
        })}</tbody></table>`
      : html`<p class="muted">The outbox is empty: every task enqueued in a transaction has been handed to the queue.</p>`;
    return sendPage(reply, {
      title: 'Outbox',
      active: '/admin/outbox',
      operator: operatorOf(request),
      body: html`<p>Tasks enqueued inside a database transaction are written here first and sent to the queue after the commit (and by a periodic sweep if a process died in between). <span class="count">${formatNumber(n)} row${n === 1 ? '' : 's'} waiting</span>${n > SHOWN ? `; the oldest ${SHOWN} are shown` : ''}.</p>
${parked > 0 ? html`<p data-parked-count="${parked}"><span class="badge dead">${formatNumber(parked)} parked</span> A row is parked after ${MAX_SEND_ATTEMPTS} failed sends (or at once when Cloud Tasks refuses it as malformed). Fix the cause in its last error, then <code>backend outbox resend &lt;id&gt;</code>; or give it up with <code>backend outbox drop &lt;id&gt;</code>.</p>` : ''}
<div class="panel">${table}</div>`,
    });
  });
}

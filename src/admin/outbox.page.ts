// The dashboard's outbox (/admin/outbox): the transactional outbox rows still waiting to be sent to
// Cloud Tasks, oldest first, with why each waits (send attempts, last error, age).
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';
import { html } from './html.ts';
import { sendPage } from './layout.ts';
import { OUTBOX_DEPTH, OUTBOX_ROWS } from './runs.queries.ts';
import { duration, formatNumber, operatorOf, utcTime } from './view.ts';

const SHOWN = 200;

interface OutboxRow {
  id: number | string;
  task: string;
  queue: string;
  task_id: string;
  idempotency_key: string;
  schedule_time: Date | null;
  created_at: Date;
  send_attempts: number;
  last_error: string | null;
}

/** Why a row is still here, in words. */
function why(row: OutboxRow, ageMs: number): string {
  if (row.last_error) return `sending failed ${row.send_attempts}× (the relay retries it)`;
  if (row.send_attempts > 0) return `tried ${row.send_attempts}×, no error recorded`;
  return ageMs < 60_000
    ? 'just written: the relay sends it after its transaction commits'
    : 'not sent yet: is the relay running?';
}

export function outboxPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/outbox', async (request, reply) => {
    const now = deps.clock.now();
    const [depth, rows] = await Promise.all([
      deps.db.query<{ n: number; oldest: Date | null }>(OUTBOX_DEPTH),
      deps.db.query<OutboxRow>(OUTBOX_ROWS, [SHOWN]),
    ]);
    const n = depth.rows[0]?.n ?? 0;
    const table = rows.rows.length
      ? html`<table aria-label="Outbox rows waiting">
<thead><tr><th scope="col">Row</th><th scope="col">Task</th><th scope="col">Queue</th><th scope="col">Idempotency key</th><th scope="col">Written</th><th scope="col" class="num">Age</th><th scope="col" class="num">Send attempts</th><th scope="col">Why it waits</th><th scope="col">Last error</th></tr></thead>
<tbody>${rows.rows.map((r) => {
          const age = now - new Date(r.created_at).getTime();
          return html`<tr data-outbox-id="${r.id}"><td>${r.id}</td><td>${r.task}</td><td>${r.queue}</td><td class="mono">${r.idempotency_key}</td><td>${utcTime(r.created_at)}</td><td class="num">${duration(Math.max(0, age))}</td><td class="num">${r.send_attempts}</td><td>${why(r, age)}${r.schedule_time ? html`<br><span class="muted">scheduled for ${utcTime(r.schedule_time)}</span>` : ''}</td><td>${r.last_error ?? ''}</td></tr>`;
        })}</tbody></table>`
      : html`<p class="muted">The outbox is empty: every task enqueued in a transaction has been handed to the queue.</p>`;
    return sendPage(reply, {
      title: 'Outbox',
      active: '/admin/outbox',
      operator: operatorOf(request),
      body: html`<p>Tasks enqueued inside a database transaction are written here first and sent to the queue after the commit (and by a periodic sweep if a process died in between). <span class="count">${formatNumber(n)} row${n === 1 ? '' : 's'} waiting</span>${n > SHOWN ? `; the oldest ${SHOWN} are shown` : ''}.</p>
<div class="panel">${table}</div>`,
    });
  });
}

// The dashboard's queues: each declared queue as the task backend has it (state, rate limits, retry
// settings, tasks waiting), and pause / resume / purge through the official Cloud Tasks client, the
// one production uses (the emulator locally, Cloud Tasks in the cloud). Tasks waiting come from
// v2beta3's queue stats, which v2 does not report; when that call fails the page says "unknown".
import type { protos } from '@google-cloud/tasks';
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps, TaskBackend } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, sendPage } from './layout.ts';
import {
  audit,
  callError,
  durationText,
  formatNumber,
  noBackend,
  operatorOf,
  redirectWithFlash,
  takeFlash,
  timestampMs,
  utcTime,
} from './view.ts';

type Queue = protos.google.cloud.tasks.v2.IQueue;
type QueueStats = protos.google.cloud.tasks.v2beta3.IQueueStats;

/** How long one backend call may take before the page shows what it has. */
export const BACKEND_TIMEOUT_MS = 5_000;
const NOT_FOUND = 5;
const QUEUES_PAGE = { title: 'Queues', active: '/admin/queues' } as const;

export interface QueueView {
  /** The declared name (the last part of the full name). */
  id: string;
  name: string;
  queue: Queue | undefined;
  /** Why the queue could not be read (missing in the backend, or the call failed). */
  problem: string | undefined;
  stats: QueueStats | undefined;
}

/** The page's data: each declared queue from the backend, its stats asked of v2beta3 beside it. */
export async function readQueues(deps: DashboardDeps, backend: TaskBackend): Promise<QueueView[]> {
  const { tasks, tasksBeta } = backend.clients;
  const { projectId, location } = backend.target;
  return Promise.all(
    [...deps.registry.queues.keys()].map(async (id): Promise<QueueView> => {
      const name = tasks.queuePath(projectId, location, id);
      const [queue, stats] = await Promise.all([
        tasks.getQueue({ name }, { timeout: BACKEND_TIMEOUT_MS }).then(
          ([q]) => ({ queue: q, problem: undefined }),
          (err: { code?: number }) => ({
            queue: undefined,
            problem:
              err?.code === NOT_FOUND
                ? 'not in the task backend (run `backend queues sync`)'
                : `could not be read: ${callError(err)}`,
          }),
        ),
        tasksBeta.getQueue({ name, readMask: { paths: ['stats'] } }, { timeout: BACKEND_TIMEOUT_MS }).then(
          ([q]) => q.stats ?? undefined,
          () => undefined,
        ),
      ]);
      return { id, name, ...queue, stats };
    }),
  );
}

function stateBadge(state: unknown): SafeHtml {
  const text = String(state ?? 'unknown');
  const cls = text === 'RUNNING' ? 'running-queue' : text === 'PAUSED' ? 'paused' : text === 'DISABLED' ? 'dead' : '';
  return html`<span class="badge ${cls}">${text}</span>`;
}

/** "50/s · 50 at once": the dispatch rate and how many may run at once. */
function rateText(q: Queue): string {
  const r = q.rateLimits ?? {};
  return `${r.maxDispatchesPerSecond ?? '–'}/s · ${r.maxConcurrentDispatches ?? '–'} at once`;
}

/** "20 attempts · 2 s–10 min · 6 doublings", and "within 1 h" when retries are bounded in time. */
function retriesText(q: Queue, attempts: string | number): string {
  const r = q.retryConfig ?? {};
  const within = timestampMs(r.maxRetryDuration) ? ` within ${durationText(r.maxRetryDuration)}` : '';
  return `${attempts} attempts${within} · ${durationText(r.minBackoff)}–${durationText(r.maxBackoff)} · ${r.maxDoublings ?? '–'} doublings`;
}

function queueRow(view: QueueView, csrf: SafeHtml): SafeHtml {
  const q = view.queue;
  const waiting = view.stats?.tasksCount;
  const waitingText = waiting === undefined || waiting === null ? 'unknown' : formatNumber(Number(String(waiting)));
  const head = html`<th scope="row"><code>${view.id}</code></th>`;
  const waitingCell = html`<td class="num" data-tasks-waiting="${waitingText}">${waitingText}</td>`;
  if (!q) {
    return html`<tr data-queue="${view.id}" data-state="unknown">${head}<td class="muted">${view.problem ?? 'unknown'}</td>${waitingCell}<td colspan="4"></td></tr>`;
  }
  const state = String(q.state ?? 'STATE_UNSPECIFIED');
  const action = state === 'RUNNING' ? 'pause' : 'resume';
  const maxAttempts = q.retryConfig?.maxAttempts;
  const attempts = maxAttempts === -1 ? 'unlimited' : (maxAttempts ?? '–');
  return html`<tr data-queue="${view.id}" data-state="${state}">${head}
<td>${stateBadge(state)}</td>${waitingCell}
<td>${utcTime(timestampMs(view.stats?.oldestEstimatedArrivalTime))}</td>
<td data-rate="${q.rateLimits?.maxDispatchesPerSecond ?? ''}" data-concurrent="${q.rateLimits?.maxConcurrentDispatches ?? ''}">${rateText(q)}</td>
<td data-max-attempts="${attempts}">${retriesText(q, attempts)}</td>
<td class="actions"><form class="inline" method="post" action="/admin/queues/${view.id}/${action}">${csrf}<button type="submit"${action === 'pause' ? html` class="secondary"` : ''}>${action === 'pause' ? 'Pause' : 'Resume'}</button></form> <a class="button secondary" href="/admin/queues/${view.id}/purge">Purge…</a></td></tr>`;
}

export function queuesPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/queues', async (request, reply) => {
    const backend = deps.backend;
    if (!backend) return noBackend(reply, request, QUEUES_PAGE);
    const operator = operatorOf(request);
    const views = await readQueues(deps, backend);
    const csrf = csrfField(operator);
    const statsMissing = views.some((v) => v.queue && !v.stats);
    return sendPage(reply, {
      title: 'Queues',
      active: '/admin/queues',
      operator,
      flash: takeFlash(request, reply),
      body: html`<div class="panel">
<table class="compact" data-table="queues">
<caption>The queues this service declares, as the task backend (${backend.target.projectId}, ${backend.target.location}) has them.</caption>
<thead><tr><th scope="col">Queue</th><th scope="col">State</th><th scope="col" class="num">Tasks waiting</th><th scope="col">Next task due</th><th scope="col">Rate</th><th scope="col">Retries</th><th scope="col">Actions</th></tr></thead>
<tbody>${views.map((v) => queueRow(v, csrf))}</tbody>
</table>
${statsMissing ? html`<p class="muted">Tasks waiting are "unknown" where the backend did not answer the v2beta3 stats call.</p>` : ''}
<p class="muted">Pausing stops dispatch; tasks can still be added and wait. Purging deletes every task created before it, for good.</p>
</div>`,
    });
  });

  const declared = (name: string) => deps.registry.queues.has(name);

  for (const action of ['pause', 'resume'] as const) {
    scope.post<{ Params: { name: string } }>(`/queues/:name/${action}`, async (request, reply) => {
      const { name } = request.params;
      if (!declared(name)) return reply.code(404).send('no such queue');
      const backend = deps.backend;
      if (!backend) return noBackend(reply, request, QUEUES_PAGE);
      const operator = operatorOf(request);
      const full = backend.clients.tasks.queuePath(backend.target.projectId, backend.target.location, name);
      try {
        if (action === 'pause') await backend.clients.tasks.pauseQueue({ name: full }, { timeout: BACKEND_TIMEOUT_MS });
        else await backend.clients.tasks.resumeQueue({ name: full }, { timeout: BACKEND_TIMEOUT_MS });
      } catch (err) {
        return redirectWithFlash(reply, '/admin/queues', `Could not ${action} ${name}: ${callError(err)}`, true);
      }
      await audit(deps, operator.email, action === 'pause' ? 'queue.pause' : 'queue.resume', name, { queue: full });
      return redirectWithFlash(reply, '/admin/queues', `Queue ${name} ${action === 'pause' ? 'paused' : 'resumed'}.`);
    });
  }

  // Purge is behind a confirmation page: the list links here, and only this page's form purges.
  scope.get<{ Params: { name: string } }>('/queues/:name/purge', async (request, reply) => {
    const { name } = request.params;
    if (!declared(name)) return reply.code(404).send('no such queue');
    const backend = deps.backend;
    if (!backend) return noBackend(reply, request, QUEUES_PAGE);
    const operator = operatorOf(request);
    const [view] = (await readQueues(deps, backend)).filter((v) => v.id === name);
    const waiting = view?.stats?.tasksCount;
    const count =
      waiting === undefined || waiting === null ? 'an unknown number of' : formatNumber(Number(String(waiting)));
    return sendPage(reply, {
      title: `Purge queue ${name}?`,
      active: '/admin/queues',
      operator,
      body: html`<div class="panel" data-confirm="purge">
<p>This deletes <strong data-tasks-waiting="${count}">${count}</strong> tasks waiting in <code>${name}</code>, for good: every task created before the purge. Their runs are not replayed.</p>
<form method="post" action="/admin/queues/${name}/purge">${csrfField(operator)}<input type="hidden" name="confirm" value="${name}"><button class="danger" type="submit">Purge ${name}</button> <a class="button secondary" href="/admin/queues">Cancel</a></form>
</div>`,
    });
  });

  scope.post<{ Params: { name: string }; Body: Record<string, unknown> | undefined }>(
    '/queues/:name/purge',
    async (request, reply) => {
      const { name } = request.params;
      if (!declared(name)) return reply.code(404).send('no such queue');
      const backend = deps.backend;
      if (!backend) return noBackend(reply, request, QUEUES_PAGE);
      // Without the confirmation page's field, nothing is purged: back to that page.
      if ((request.body as Record<string, unknown> | undefined)?.confirm !== name) {
        return reply.redirect(`/admin/queues/${name}/purge`, 303);
      }
      const operator = operatorOf(request);
      const full = backend.clients.tasks.queuePath(backend.target.projectId, backend.target.location, name);
      const stats = await backend.clients.tasksBeta
        .getQueue({ name: full, readMask: { paths: ['stats'] } }, { timeout: BACKEND_TIMEOUT_MS })
        .then(
          ([q]) => q.stats?.tasksCount,
          () => undefined,
        );
      try {
        await backend.clients.tasks.purgeQueue({ name: full }, { timeout: BACKEND_TIMEOUT_MS });
      } catch (err) {
        return redirectWithFlash(reply, '/admin/queues', `Could not purge ${name}: ${callError(err)}`, true);
      }
      const before = stats === undefined || stats === null ? null : Number(String(stats));
      await audit(deps, operator.email, 'queue.purge', name, { queue: full, tasksBefore: before });
      return redirectWithFlash(
        reply,
        '/admin/queues',
        `Queue ${name} purged${before === null ? '' : ` (${formatNumber(before)} tasks were waiting)`}.`,
      );
    },
  );
}

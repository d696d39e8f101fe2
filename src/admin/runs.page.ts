// The dashboard's task runs: the filtered list (keyset pages, every filter a link), a run's page
// with its payload, result, delivery headers and attempts, replay of one run, and replay of every
// dead run matching a filter behind a confirmation. Replays go through replayRun, as in the CLI.
import type { FastifyInstance } from 'fastify';
import { auditEvents } from '../domains/audit/index.ts';
import { AppError } from '../errors.ts';
import { replayRun } from '../tasks/replay.ts';
import { type RunStatus, type TaskRun, taskRuns } from '../tasks/task-runs.repository.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, sendPage } from './layout.ts';
import type { Operator } from './operator.ts';
import {
  deadRunCountQuery,
  deadRunIdsQuery,
  queryRows,
  RUN_STATUSES,
  type RunCursor,
  type RunFilter,
  type RunListRow,
  runCountQuery,
  runListQuery,
} from './runs.queries.ts';
import { badge, duration, field, formatNumber, operatorOf, redirectWithFlash, takeFlash, utcTime } from './view.ts';

export const PAGE_SIZE = 50;
/** Counts stop here, so a broad filter costs a bounded scan. */
export const COUNT_CAP = 10_000;
/** At most this many dead runs are replayed per click of the bulk replay. */
export const BULK_REPLAY_CAP = 1_000;
/** Bulk replays sent at once (each is two statements and one createTask call). */
const REPLAY_CONCURRENCY = 4;

// ---- the filter in the query string ------------------------------------------------------------

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?$/;
const CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)~(\d{1,15})$/;

/** A time from a datetime-local input (read as UTC) or an ISO time. */
function parseTime(text: string | undefined, label: string, problems: string[]): Date | undefined {
  if (text === undefined) return undefined;
  const date = TIME.test(text) ? new Date(/Z|[+-]\d{2}:\d{2}$/.test(text) ? text : `${text}Z`) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    problems.push(`"${label}" is not a time (expected e.g. 2026-03-01T12:00, UTC); it was ignored.`);
    return undefined;
  }
  return date;
}

/** Reads the filter from a query string or a form; what does not parse is ignored and said. */
export function parseRunFilter(source: unknown): { filter: RunFilter; problems: string[] } {
  const problems: string[] = [];
  const filter: RunFilter = {};
  const task = field(source, 'task');
  if (task !== undefined) filter.task = task.slice(0, 200);
  const status = field(source, 'status');
  if (status !== undefined) {
    if ((RUN_STATUSES as readonly string[]).includes(status)) filter.status = status as RunStatus;
    else problems.push(`Unknown status "${status}"; it was ignored.`);
  }
  filter.from = parseTime(field(source, 'from'), 'from', problems);
  filter.to = parseTime(field(source, 'to'), 'to', problems);
  const key = field(source, 'key');
  if (key !== undefined) filter.keyPrefix = key.slice(0, 500);
  return { filter, problems };
}

function parseCursor(source: unknown): RunCursor | undefined {
  const m = CURSOR.exec(field(source, 'after') ?? '');
  return m ? { at: m[1]!, id: Number(m[2]) } : undefined;
}

const inputTime = (d: Date) => d.toISOString().slice(0, 19);

/** The filter as query-string pairs (for links and hidden form fields). */
export function filterParams(filter: RunFilter): [string, string][] {
  const pairs: [string, string][] = [];
  if (filter.task !== undefined) pairs.push(['task', filter.task]);
  if (filter.status !== undefined) pairs.push(['status', filter.status]);
  if (filter.from !== undefined) pairs.push(['from', inputTime(filter.from)]);
  if (filter.to !== undefined) pairs.push(['to', inputTime(filter.to)]);
  if (filter.keyPrefix !== undefined) pairs.push(['key', filter.keyPrefix]);
  return pairs;
}

export function runsUrl(filter: RunFilter, extra: [string, string][] = [], path = '/admin/runs'): string {
  const qs = new URLSearchParams([...filterParams(filter), ...extra]).toString();
  return qs ? `${path}?${qs}` : path;
}

function describeFilter(filter: RunFilter): string {
  const parts: string[] = [];
  if (filter.task !== undefined) parts.push(`task ${filter.task}`);
  if (filter.status !== undefined) parts.push(`status ${filter.status}`);
  if (filter.from !== undefined) parts.push(`last activity from ${inputTime(filter.from)} UTC`);
  if (filter.to !== undefined) parts.push(`last activity before ${inputTime(filter.to)} UTC`);
  if (filter.keyPrefix !== undefined) parts.push(`idempotency key starting with "${filter.keyPrefix}"`);
  return parts.length ? parts.join(', ') : 'no filter (all runs)';
}

/** The bulk replay's answer when nothing is dead: the filter named without its status (always dead). */
function noDeadRuns(filter: RunFilter): string {
  const rest = { ...filter, status: undefined };
  return filterParams(rest).length === 0 ? 'There are no dead runs.' : `No dead runs match ${describeFilter(rest)}.`;
}

// ---- pages ---------------------------------------------------------------------------------

function filterForm(filter: RunFilter, tasks: string[]): SafeHtml {
  const taskNames = filter.task && !tasks.includes(filter.task) ? [...tasks, filter.task] : tasks;
  const option = (value: string, label: string, selected: boolean) =>
    html`<option value="${value}"${selected ? html` selected` : ''}>${label}</option>`;
  return html`<form class="filters" method="get" action="/admin/runs" aria-label="Filter runs">
<label>Task <select name="task">${option('', 'all tasks', filter.task === undefined)}${taskNames.map((t) => option(t, t, t === filter.task))}</select></label>
<label>Status <select name="status">${option('', 'any status', filter.status === undefined)}${RUN_STATUSES.map((s) => option(s, s, s === filter.status))}</select></label>
<label>Latest attempt started from (UTC) <input type="datetime-local" step="1" name="from" value="${filter.from ? inputTime(filter.from) : ''}"></label>
<label>Latest attempt started before (UTC) <input type="datetime-local" step="1" name="to" value="${filter.to ? inputTime(filter.to) : ''}"></label>
<label>Idempotency key starts with <input type="search" name="key" value="${filter.keyPrefix ?? ''}" placeholder="key or its start"></label>
<button type="submit">Filter</button>
<a class="button secondary" href="/admin/runs">Clear</a>
</form>`;
}

function runsTable(rows: RunListRow[]): SafeHtml {
  if (rows.length === 0) return html`<p class="muted">No runs match.</p>`;
  return html`<table aria-label="Task runs">
<thead><tr><th scope="col">Run</th><th scope="col">Task</th><th scope="col">Idempotency key</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th><th scope="col" class="num">Duration</th><th scope="col">Latest attempt started</th><th scope="col">Last error</th></tr></thead>
<tbody>${rows.map(
    (r) =>
      html`<tr data-run-id="${r.id}" data-status="${r.status}"><td><a href="/admin/runs/${r.id}">#${r.id}</a></td><td>${r.task}</td><td class="mono">${r.idempotency_key}</td><td>${badge(r.status)}${r.replays > 0 ? html` <span class="muted">replayed ${r.replays}×</span>` : ''}</td><td class="num">${r.attempts}</td><td class="num">${duration(r.duration_ms)}</td><td>${utcTime(r.activity_at)}</td><td>${r.last_error ?? ''}</td></tr>`,
  )}</tbody>
</table>`;
}

function json(value: unknown): string {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  return text.length > 100_000 ? `${text.slice(0, 100_000)}\n… (${formatNumber(text.length)} characters in all)` : text;
}

function runDetail(run: TaskRun, operator: Operator, backendConnected: boolean): SafeHtml {
  const latestMs =
    run.startedAt && run.finishedAt ? new Date(run.finishedAt).getTime() - new Date(run.startedAt).getTime() : null;
  const replayable = run.status === 'dead' || run.status === 'failed';
  const replay = !replayable
    ? ''
    : backendConnected
      ? html`<form method="post" action="/admin/runs/${run.id}/replay">${csrfField(operator)}<button type="submit">Replay run #${run.id}</button> <span class="muted">Enqueues the task again under the same idempotency key, as a new series of attempts.</span></form>`
      : html`<p class="muted">The task backend is not connected to this process, so this run cannot be replayed here (use <code>backend runs replay ${run.id}</code>).</p>`;
  const delivery = Object.entries(run.delivery ?? {});
  return html`<div class="panel">
<dl class="kv" aria-label="Run">
<dt>Task</dt><dd>${run.task}</dd>
<dt>Idempotency key</dt><dd class="mono">${run.idempotencyKey}</dd>
<dt>Status</dt><dd data-status="${run.status}">${badge(run.status)}</dd>
<dt>Attempts</dt><dd>${run.attempts}</dd>
<dt>Replays</dt><dd>${run.replays}</dd>
<dt>Queue</dt><dd>${run.queueName ?? '–'}</dd>
<dt>Cloud Tasks task</dt><dd class="mono">${run.cloudTaskName ?? '–'}</dd>
<dt>Created</dt><dd>${utcTime(run.createdAt)}</dd>
<dt>Latest attempt started</dt><dd>${utcTime(run.startedAt)}</dd>
<dt>Finished</dt><dd>${utcTime(run.finishedAt)}</dd>
<dt>Latest attempt took</dt><dd>${duration(latestMs)}</dd>
<dt>Last activity</dt><dd>${utcTime(run.updatedAt)}</dd>
${run.leaseExpiresAt ? html`<dt>Lease expires</dt><dd>${utcTime(run.leaseExpiresAt)}</dd>` : ''}
</dl>
</div>
${replay}
<h2>Payload</h2>
<pre class="payload">${json(run.payload)}</pre>
${
  run.lastError
    ? html`<h2>Last error</h2><pre class="error">${run.lastError}</pre>`
    : html`<h2>Result</h2><pre class="result">${run.result === null || run.result === undefined ? 'none' : json(run.result)}</pre>`
}
<h2>Delivery headers (latest delivery)</h2>
${
  delivery.length
    ? html`<table aria-label="Delivery headers"><thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead><tbody>${delivery.map(
        ([k, v]) =>
          html`<tr><td class="mono">${k}</td><td class="mono">${typeof v === 'string' ? v : JSON.stringify(v)}</td></tr>`,
      )}</tbody></table>`
    : html`<p class="muted">None recorded.</p>`
}
<h2>Attempts</h2>
${
  run.attemptHistory.length
    ? html`<table aria-label="Attempts"><thead><tr><th scope="col" class="num">Attempt</th><th scope="col">Status</th><th scope="col">Started</th><th scope="col">Finished</th><th scope="col" class="num">Duration</th><th scope="col" class="num">Queue retry count</th><th scope="col">Error</th></tr></thead>
<tbody>${run.attemptHistory.map(
        (a) =>
          html`<tr data-attempt="${a.attempt}" data-status="${a.status}"><td class="num">${a.attempt}</td><td>${badge(a.status)}</td><td>${utcTime(a.startedAt)}</td><td>${utcTime(a.finishedAt)}</td><td class="num">${duration(a.durationMs)}</td><td class="num">${a.retryCount ?? '–'}</td><td>${a.error ?? ''}</td></tr>`,
      )}</tbody></table>`
    : html`<p class="muted">No attempt has finished yet.</p>`
}`;
}

/** Replays runs one after another, a few at a time; returns how many went and why the rest did not. */
async function replayMany(
  deps: DashboardDeps,
  ids: number[],
): Promise<{ replayed: number; refused: { id: number; reason: string }[] }> {
  const backend = deps.backend!;
  const refused: { id: number; reason: string }[] = [];
  let replayed = 0;
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      try {
        await replayRun(deps.db, backend.enqueuer, id, new Date(deps.clock.now()));
        replayed++;
      } catch (err) {
        refused.push({ id, reason: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(REPLAY_CONCURRENCY, ids.length) }, worker));
  return { replayed, refused };
}

export function runsPages(scope: FastifyInstance, deps: DashboardDeps): void {
  const taskNames = () => [...deps.registry.tasks.keys()].sort();

  scope.get('/runs', async (request, reply) => {
    const { filter, problems } = parseRunFilter(request.query);
    const cursor = parseCursor(request.query);
    const [rows, counted] = await Promise.all([
      queryRows<RunListRow>(deps.db, runListQuery(filter, cursor, PAGE_SIZE + 1)),
      queryRows<{ n: number }>(deps.db, runCountQuery(filter, COUNT_CAP)),
    ]);
    const page = rows.slice(0, PAGE_SIZE);
    const last = page.at(-1);
    const nextUrl =
      rows.length > PAGE_SIZE && last ? runsUrl(filter, [['after', `${last.cursor_at}~${last.id}`]]) : undefined;
    const n = counted[0]?.n ?? 0;
    const count =
      n > COUNT_CAP
        ? `More than ${formatNumber(COUNT_CAP)} runs match`
        : n === 1
          ? '1 run matches'
          : `${formatNumber(n)} runs match`;
    const flash =
      takeFlash(request, reply) ?? (problems.length ? { text: problems.join(' '), error: true } : undefined);
    return sendPage(reply, {
      title: 'Task runs',
      active: '/admin/runs',
      operator: operatorOf(request),
      flash,
      body: html`${filterForm(filter, taskNames())}
<p><span class="count">${count}</span> <span class="muted">(${describeFilter(filter)}; newest activity first)</span>.
<a href="${runsUrl(filter, [], '/admin/runs/replay')}">Replay the dead runs matching this filter…</a></p>
<div class="panel">${runsTable(page)}</div>
<nav class="pager" aria-label="Pages">${cursor ? html`<a href="${runsUrl(filter)}">Newest</a>` : ''}${nextUrl ? html`<a rel="next" href="${nextUrl}">Next page</a>` : html`<span class="muted">End of the list.</span>`}</nav>`,
    });
  });

  // Bulk replay, step one: how many dead runs match, and a form to confirm.
  scope.get('/runs/replay', async (request, reply) => {
    const { filter, problems } = parseRunFilter(request.query);
    const n = (await queryRows<{ n: number }>(deps.db, deadRunCountQuery(filter)))[0]?.n ?? 0;
    const operator = operatorOf(request);
    const dead = { ...filter, status: 'dead' as const };
    const hidden = filterParams({ ...filter, status: undefined }).map(
      ([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`,
    );
    const now = Math.min(n, BULK_REPLAY_CAP);
    const body = !deps.backend
      ? html`<p>The task backend is not connected to this process, so runs cannot be replayed here.</p>`
      : n === 0
        ? html`<p>${noDeadRuns(filter)}</p><p><a href="${runsUrl(filter)}">Back to the runs</a></p>`
        : html`<div class="panel">
<p class="confirm-count" data-count="${n}"><strong>Replay ${formatNumber(n)} dead run${n === 1 ? '' : 's'}?</strong></p>
<p>Matching: ${describeFilter(dead)}.</p>
<p>Each run is enqueued again under its idempotency key, as a new series of attempts. At most ${formatNumber(BULK_REPLAY_CAP)} runs are replayed per click, newest first${n > BULK_REPLAY_CAP ? html`: this click replays ${formatNumber(now)}, and the page will offer the rest again` : ''}.</p>
<form method="post" action="/admin/runs/replay">${csrfField(operator)}${hidden}<button class="danger" type="submit">Replay ${formatNumber(now)} dead run${now === 1 ? '' : 's'}</button> <a class="button secondary" href="${runsUrl(dead)}">Cancel</a></form>
</div>`;
    return sendPage(reply, {
      title: 'Replay dead runs',
      active: '/admin/runs',
      operator,
      flash: problems.length ? { text: problems.join(' '), error: true } : undefined,
      body,
    });
  });

  // Bulk replay, step two: at most BULK_REPLAY_CAP of the newest matching dead runs.
  scope.post('/runs/replay', async (request, reply) => {
    const { filter } = parseRunFilter(request.body);
    const back = runsUrl({ ...filter, status: undefined });
    if (!deps.backend)
      return redirectWithFlash(reply, back, 'The task backend is not connected; nothing was replayed.', true);
    const [matched, rows] = await Promise.all([
      queryRows<{ n: number }>(deps.db, deadRunCountQuery(filter)),
      queryRows<{ id: number | string }>(deps.db, deadRunIdsQuery(filter, BULK_REPLAY_CAP)),
    ]);
    const ids = rows.map((r) => Number(r.id));
    const { replayed, refused } = await replayMany(deps, ids);
    await auditEvents.append(deps.db, {
      at: new Date(deps.clock.now()),
      actor: operatorOf(request).email,
      action: 'runs.replay_matching',
      target: null,
      detail: {
        filter: Object.fromEntries(filterParams({ ...filter, status: 'dead' })),
        matched: matched[0]?.n ?? 0,
        attempted: ids.length,
        count: replayed,
        cap: BULK_REPLAY_CAP,
        refused: refused.slice(0, 20),
      },
    });
    const rest = (matched[0]?.n ?? 0) - ids.length;
    const text =
      `Replayed ${formatNumber(replayed)} dead run${replayed === 1 ? '' : 's'}.` +
      (refused.length
        ? ` ${refused.length} could not be: ${refused
            .slice(0, 3)
            .map((r) => `#${r.id}: ${r.reason}`)
            .join('; ')}${refused.length > 3 ? '; …' : ''}.`
        : '') +
      (rest > 0
        ? ` ${formatNumber(rest)} more match; replay again for the next ${formatNumber(BULK_REPLAY_CAP)}.`
        : '');
    return redirectWithFlash(reply, back, text, refused.length > 0);
  });

  scope.get<{ Params: { id: string } }>('/runs/:id', async (request, reply) => {
    const operator = operatorOf(request);
    const id = /^\d{1,15}$/.test(request.params.id) ? Number(request.params.id) : undefined;
    const run = id === undefined ? undefined : await taskRuns.getRun(deps.db, id);
    if (!run) {
      return sendPage(
        reply,
        {
          title: 'Run not found',
          active: '/admin/runs',
          operator,
          body: html`<p>No run with id ${request.params.id}.</p><p><a href="/admin/runs">Back to the runs</a></p>`,
        },
        404,
      );
    }
    return sendPage(reply, {
      title: `Run #${run.id} · ${run.task}`,
      active: '/admin/runs',
      operator,
      flash: takeFlash(request, reply),
      body: runDetail(run, operator, deps.backend !== undefined),
    });
  });

  scope.post<{ Params: { id: string } }>('/runs/:id/replay', async (request, reply) => {
    const operator = operatorOf(request);
    if (!/^\d{1,15}$/.test(request.params.id)) return reply.code(404).send();
    const id = Number(request.params.id);
    const back = `/admin/runs/${id}`;
    if (!deps.backend)
      return redirectWithFlash(reply, back, 'The task backend is not connected; nothing was replayed.', true);
    const at = new Date(deps.clock.now());
    try {
      const { run, taskName } = await replayRun(deps.db, deps.backend.enqueuer, id, at);
      await auditEvents.append(deps.db, {
        at,
        actor: operator.email,
        action: 'run.replay',
        target: String(id),
        detail: { task: run.task, key: run.idempotencyKey, replays: run.replays, taskName },
      });
      return redirectWithFlash(
        reply,
        back,
        `Run #${id} was replayed (replay ${run.replays}): its task is enqueued again.`,
      );
    } catch (err) {
      if (!(err instanceof AppError)) request.log.error({ err, runId: id }, 'replay from the dashboard failed');
      const reason = (err as Error).message;
      await auditEvents.append(deps.db, {
        at,
        actor: operator.email,
        action: 'run.replay',
        target: String(id),
        detail: { refused: reason },
      });
      return redirectWithFlash(reply, back, `Run #${id} was not replayed: ${reason}`, true);
    }
  });
}

// The dashboard's overview (/admin): a few headline numbers and charts drawn on the server: runs
// per minute by outcome over the last hour, failures by task, and p50/p95 durations by task over
// the last hour and day. The figures behind each chart are in a table under it.
import type { FastifyInstance } from 'fastify';
import { formatNumber, groupedBars, OUTCOME_SERIES, type Series, stackedBars } from './charts.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { sendPage } from './layout.ts';
import { duration, takeFlash } from './runs.page.ts';
import { DEAD_RUNS, OUTBOX_DEPTH, RUNS_PER_MINUTE, TASK_STATS } from './runs.queries.ts';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

interface TaskStats {
  task: string;
  runs_hour: number;
  failures_hour: number;
  runs_day: number;
  failures_day: number;
  p50_hour: number | null;
  p95_hour: number | null;
  p50_day: number | null;
  p95_day: number | null;
}

const WINDOW_SERIES: Series[] = [
  { key: 'hour', label: 'last hour', color: '#d93025' },
  { key: 'day', label: 'last day', color: '#f28b82' },
];

const PERCENTILE_SERIES: Series[] = [
  { key: 'p50', label: 'p50', color: '#1a73e8' },
  { key: 'p95', label: 'p95', color: '#8ab4f8' },
];

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);
const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function stat(label: string, value: string, href?: string, note?: string): SafeHtml {
  return html`<div class="panel"><div class="muted">${label}</div><div class="stat">${href ? html`<a href="${href}">${value}</a>` : value}</div>${note ? html`<div class="muted">${note}</div>` : ''}</div>`;
}

export function overviewPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/', async (request, reply) => {
    const now = deps.clock.now();
    const lastMinute = Math.floor(now / MINUTE);
    const firstMinute = lastMinute - 59;
    const [perMinute, stats, dead, outbox] = await Promise.all([
      deps.db.query<{ minute: number | string; status: string; n: number }>(RUNS_PER_MINUTE, [
        new Date(firstMinute * MINUTE),
        new Date(now),
      ]),
      deps.db.query<TaskStats>(TASK_STATS, [new Date(now - HOUR), new Date(now - DAY), new Date(now)]),
      deps.db.query<{ n: number }>(DEAD_RUNS),
      deps.db.query<{ n: number; oldest: Date | null }>(OUTBOX_DEPTH),
    ]);

    const buckets = Array.from({ length: 60 }, (_, i) => ({
      label: hhmm((firstMinute + i) * MINUTE),
      values: {} as Record<string, number>,
    }));
    for (const row of perMinute.rows) {
      const bucket = buckets[Number(row.minute) - firstMinute];
      if (bucket) bucket.values[row.status] = (bucket.values[row.status] ?? 0) + row.n;
    }
    const tasks = stats.rows.map((r) => ({
      ...r,
      p50_hour: num(r.p50_hour),
      p95_hour: num(r.p95_hour),
      p50_day: num(r.p50_day),
      p95_day: num(r.p95_day),
    }));
    const runsHour = tasks.reduce((s, t) => s + t.runs_hour, 0);
    const failuresHour = tasks.reduce((s, t) => s + t.failures_hour, 0);
    const deadRuns = dead.rows[0]?.n ?? 0;
    const outboxDepth = outbox.rows[0]?.n ?? 0;
    const oldest = outbox.rows[0]?.oldest;

    const perMinuteChart = stackedBars({
      id: 'runs-per-minute',
      title: 'Runs per minute by outcome, last hour (UTC)',
      description: `Runs finished in each minute from ${hhmm(firstMinute * MINUTE)} to ${hhmm(lastMinute * MINUTE)} UTC, stacked by outcome: ${formatNumber(runsHour)} in all.`,
      series: OUTCOME_SERIES,
      buckets,
      labelEvery: 10,
    });
    const failuresChart = groupedBars({
      id: 'failures-by-task',
      title: 'Failures by task (failed or dead)',
      description: 'Runs whose latest attempt failed, by task, over the last hour and the last day.',
      series: WINDOW_SERIES,
      rows: tasks
        .filter((t) => t.failures_day > 0)
        .map((t) => ({ label: t.task, values: { hour: t.failures_hour, day: t.failures_day } })),
    });
    const durationChart = (window: 'hour' | 'day') =>
      groupedBars({
        id: `durations-${window}`,
        title: `Duration of the latest attempt by task, p50 and p95, last ${window} (ms)`,
        description: `The median and 95th percentile duration in milliseconds of runs finished in the last ${window}, by task.`,
        series: PERCENTILE_SERIES,
        unit: ' ms',
        rows: tasks
          .filter((t) => (window === 'hour' ? t.runs_hour : t.runs_day) > 0)
          .map((t) => ({
            label: t.task,
            values: {
              p50: window === 'hour' ? t.p50_hour : t.p50_day,
              p95: window === 'hour' ? t.p95_hour : t.p95_day,
            },
          })),
      });

    const figures = html`<details><summary>The figures by task</summary>
<table aria-label="Runs by task">
<thead><tr><th scope="col">Task</th><th scope="col" class="num">Runs, hour</th><th scope="col" class="num">Failures, hour</th><th scope="col" class="num">p50, hour</th><th scope="col" class="num">p95, hour</th><th scope="col" class="num">Runs, day</th><th scope="col" class="num">Failures, day</th><th scope="col" class="num">p50, day</th><th scope="col" class="num">p95, day</th></tr></thead>
<tbody>${tasks.map(
      (t) =>
        html`<tr data-task="${t.task}"><td><a href="/admin/runs?task=${encodeURIComponent(t.task)}">${t.task}</a></td><td class="num">${formatNumber(t.runs_hour)}</td><td class="num">${formatNumber(t.failures_hour)}</td><td class="num">${duration(t.p50_hour)}</td><td class="num">${duration(t.p95_hour)}</td><td class="num">${formatNumber(t.runs_day)}</td><td class="num">${formatNumber(t.failures_day)}</td><td class="num">${duration(t.p50_day)}</td><td class="num">${duration(t.p95_day)}</td></tr>`,
    )}</tbody>
</table></details>`;

    return sendPage(reply, {
      title: 'Overview',
      active: '/admin',
      operator: request.operator!,
      flash: takeFlash(request, reply),
      body: html`<div class="grid headline">
${stat('Runs finished, last hour', formatNumber(runsHour), '/admin/runs', `${formatNumber(failuresHour)} failed or dead`)}
${stat('Dead runs waiting', formatNumber(deadRuns), '/admin/runs?status=dead', 'replay them from the runs page')}
${stat('Outbox rows waiting', formatNumber(outboxDepth), '/admin/outbox', oldest ? `oldest ${duration(now - new Date(oldest).getTime())} old` : 'none waiting')}
</div>
<div class="panel">${perMinuteChart}</div>
<div class="grid">
<div class="panel">${failuresChart}</div>
<div class="panel">${durationChart('hour')}</div>
<div class="panel">${durationChart('day')}</div>
</div>
<div class="panel">${figures}</div>`,
    });
  });
}

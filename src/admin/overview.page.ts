// The dashboard's overview (/admin): a few headline numbers and charts drawn on the server: runs
// per minute by outcome over the last hour, failures by task, and p50/p95 durations by task over
// the last hour and day. The figures behind each chart are in a table under it. Percentiles come
// from a log-scale histogram the database aggregates without sorting (runs.queries.ts).
import type { FastifyInstance } from 'fastify';
import { CHART_WIDTH, groupedBars, OUTCOME_SERIES, type Series, stackedBars } from './charts.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { sendPage } from './layout.ts';
import { DEAD_RUNS, DURATION_BUCKETS_PER_LN, OUTBOX_DEPTH, RUNS_PER_MINUTE, TASK_HISTOGRAM } from './runs.queries.ts';
import { duration, formatNumber, operatorOf, takeFlash } from './view.ts';

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

interface HistogramRow {
  task: string;
  in_hour: boolean;
  failed: boolean;
  bucket: number | null;
  n: number;
}

/** The duration a bucket stands for: its middle on the log scale. */
const bucketMs = (bucket: number) => Math.exp((bucket - 0.5) / DURATION_BUCKETS_PER_LN);

/** The p-th percentile (nearest rank) of a histogram, or null when it is empty. */
export function histogramPercentile(counts: Map<number, number>, p: number): number | null {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (const bucket of [...counts.keys()].sort((a, b) => a - b)) {
    seen += counts.get(bucket)!;
    if (seen >= rank) return bucketMs(bucket);
  }
  return null;
}

/** Per task: runs and failures over the hour and the day, and p50/p95 durations read from the histogram. */
export function taskStats(rows: HistogramRow[]): TaskStats[] {
  const byTask = new Map<string, { counts: TaskStats; hour: Map<number, number>; day: Map<number, number> }>();
  for (const r of rows) {
    let t = byTask.get(r.task);
    if (!t) {
      t = {
        counts: { task: r.task, runs_hour: 0, failures_hour: 0, runs_day: 0, failures_day: 0 } as TaskStats,
        hour: new Map(),
        day: new Map(),
      };
      byTask.set(r.task, t);
    }
    t.counts.runs_day += r.n;
    if (r.failed) t.counts.failures_day += r.n;
    if (r.in_hour) {
      t.counts.runs_hour += r.n;
      if (r.failed) t.counts.failures_hour += r.n;
    }
    if (r.bucket !== null) {
      t.day.set(r.bucket, (t.day.get(r.bucket) ?? 0) + r.n);
      if (r.in_hour) t.hour.set(r.bucket, (t.hour.get(r.bucket) ?? 0) + r.n);
    }
  }
  return [...byTask.values()]
    .map((t) => ({
      ...t.counts,
      p50_hour: histogramPercentile(t.hour, 50),
      p95_hour: histogramPercentile(t.hour, 95),
      p50_day: histogramPercentile(t.day, 50),
      p95_day: histogramPercentile(t.day, 95),
    }))
    .sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : 0));
}

const round = (v: number | null) => (v === null ? null : Math.round(v));
const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

function stat(label: string, value: string, href?: string, note?: string): SafeHtml {
  return html`<div class="panel"><div class="muted">${label}</div><div class="stat">${href ? html`<a href="${href}">${value}</a>` : value}</div>${note ? html`<div class="muted">${note}</div>` : ''}</div>`;
}

/** How long the older part of the day's histogram is reused (per process). */
export const EARLIER_PART_TTL_MS = 30_000;

export function overviewPages(scope: FastifyInstance, deps: DashboardDeps): void {
  // The day's figures are the bulk of the overview's reading (the last hour is a 24th of it), and
  // the part older than an hour changes only when an old run is retried: it is read at most every
  // EARLIER_PART_TTL_MS, and the rest (from where it ended to now) on every request, so nothing is
  // lost between the two and the day's window is at most that much too long.
  let earlier: { end: number; readAt: number; rows: HistogramRow[] } | undefined;
  const earlierPart = async (now: number) => {
    if (!earlier || now < earlier.readAt || now - earlier.readAt >= EARLIER_PART_TTL_MS) {
      const end = now - HOUR;
      const { rows } = await deps.db.query<HistogramRow>(TASK_HISTOGRAM, [
        new Date(end),
        new Date(now - DAY),
        new Date(end),
      ]);
      earlier = { end, readAt: now, rows };
    }
    return earlier;
  };
  const dayHistogram = async (now: number) => {
    const older = await earlierPart(now);
    const { rows } = await deps.db.query<HistogramRow>(TASK_HISTOGRAM, [
      new Date(now - HOUR),
      new Date(older.end),
      new Date(now),
    ]);
    return [...older.rows, ...rows];
  };

  scope.get('/', async (request, reply) => {
    const now = deps.clock.now();
    const lastMinute = Math.floor(now / MINUTE);
    const firstMinute = lastMinute - 59;
    const [perMinute, stats, dead, outbox] = await Promise.all([
      deps.db.query<{ minute: number | string; status: string; n: number }>(RUNS_PER_MINUTE, [
        new Date(firstMinute * MINUTE),
        new Date(now),
      ]),
      dayHistogram(now),
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
    const tasks = taskStats(stats);
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
      labelEvery: 5,
      width: CHART_WIDTH.full,
    });
    const failuresChart = groupedBars({
      id: 'failures-by-task',
      title: 'Failures by task (failed or dead)',
      description: 'Runs whose latest attempt failed, by task, over the last hour and the last day.',
      series: WINDOW_SERIES,
      width: CHART_WIDTH.full,
      rows: tasks
        .filter((t) => t.failures_day > 0)
        .map((t) => ({ label: t.task, values: { hour: t.failures_hour, day: t.failures_day } })),
    });
    const durationChart = (window: 'hour' | 'day') =>
      groupedBars({
        id: `durations-${window}`,
        title: `Duration of the latest attempt by task, p50 and p95, last ${window} (ms)`,
        description: `The median and 95th percentile duration in milliseconds of runs finished in the last ${window}, by task (read from a histogram of 6 %-wide buckets: within about 3 % of the exact figure).`,
        series: PERCENTILE_SERIES,
        unit: ' ms',
        width: CHART_WIDTH.half,
        rows: tasks
          .filter((t) => (window === 'hour' ? t.runs_hour : t.runs_day) > 0)
          .map((t) => ({
            label: t.task,
            values: {
              p50: round(window === 'hour' ? t.p50_hour : t.p50_day),
              p95: round(window === 'hour' ? t.p95_hour : t.p95_day),
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
      operator: operatorOf(request),
      flash: takeFlash(request, reply),
      body: html`<div class="grid headline">
${stat('Runs finished, last hour', formatNumber(runsHour), '/admin/runs', `${formatNumber(failuresHour)} failed or dead`)}
${stat('Dead runs waiting', formatNumber(deadRuns), '/admin/runs?status=dead', 'replay them from the runs page')}
${stat('Outbox rows waiting', formatNumber(outboxDepth), '/admin/outbox', oldest ? `oldest ${duration(now - new Date(oldest).getTime())} old` : 'none waiting')}
</div>
<section class="panel" aria-labelledby="h-runs-per-minute"><h2 id="h-runs-per-minute">Runs per minute by outcome, last hour</h2>${perMinuteChart}</section>
<section class="panel" aria-labelledby="h-failures-by-task"><h2 id="h-failures-by-task">Failures by task, last hour and day</h2>${failuresChart}</section>
<div class="charts">
<section class="panel" aria-labelledby="h-durations-hour"><h2 id="h-durations-hour">Durations by task, last hour (p50, p95)</h2>${durationChart('hour')}</section>
<section class="panel" aria-labelledby="h-durations-day"><h2 id="h-durations-day">Durations by task, last day (p50, p95)</h2>${durationChart('day')}</section>
</div>
<div class="panel">${figures}</div>`,
    });
  });
}

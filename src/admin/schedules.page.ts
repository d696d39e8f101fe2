// The dashboard's schedules: each declared schedule beside its Cloud Scheduler job (cron, time zone,
// next run, last outcome, state), and run now / pause / resume through the official client, the one
// production uses (the emulator locally, Cloud Scheduler in the cloud).
import type { protos } from '@google-cloud/scheduler';
import type { FastifyInstance } from 'fastify';
import { JOB_PREFIX } from '../tasks/schedule-sync.ts';
import type { DashboardDeps, TaskBackend } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, sendPage } from './layout.ts';
import { BACKEND_TIMEOUT_MS } from './queues.page.ts';
import { audit, callError, noBackend, operatorOf, redirectWithFlash, takeFlash, timestampMs, utcTime } from './view.ts';

type Job = protos.google.cloud.scheduler.v1.IJob;

const NOT_FOUND = 5;
const SCHEDULES_PAGE = { title: 'Schedules', active: '/admin/schedules' } as const;

export interface ScheduleView {
  id: string;
  task: string;
  cron: string;
  timeZone: string;
  jobName: string;
  job: Job | undefined;
  problem: string | undefined;
}

export async function readSchedules(deps: DashboardDeps, backend: TaskBackend): Promise<ScheduleView[]> {
  const { scheduler } = backend.clients;
  const { projectId, location } = backend.target;
  return Promise.all(
    deps.registry.schedules.map(async (s): Promise<ScheduleView> => {
      const jobName = scheduler.jobPath(projectId, location, `${JOB_PREFIX}${s.name}`);
      const base = { id: s.name, task: s.task, cron: s.cron, timeZone: s.timeZone ?? 'UTC', jobName };
      try {
        const [job] = await scheduler.getJob({ name: jobName }, { timeout: BACKEND_TIMEOUT_MS });
        return { ...base, job, problem: undefined };
      } catch (err) {
        const problem =
          (err as { code?: number }).code === NOT_FOUND
            ? 'no job in Cloud Scheduler (run `backend schedules sync`)'
            : `could not be read: ${callError(err)}`;
        return { ...base, job: undefined, problem };
      }
    }),
  );
}

/** The last attempt's outcome: the job's status (google.rpc.Status; code 0 is success). */
function lastOutcome(job: Job): SafeHtml {
  if (timestampMs(job.lastAttemptTime) === undefined) return html`<span class="muted">never ran</span>`;
  const code = Number(job.status?.code ?? 0);
  if (code === 0) return html`<span class="badge succeeded" data-outcome="succeeded">succeeded</span>`;
  return html`<span class="badge failed" data-outcome="failed">failed</span> <span class="muted">${job.status?.message || `code ${code}`}</span>`;
}

function scheduleRow(view: ScheduleView, csrf: SafeHtml): SafeHtml {
  const job = view.job;
  const head = html`<th scope="row"><code>${view.id}</code></th><td><code>${view.task}</code></td>`;
  if (!job) {
    return html`<tr data-schedule="${view.id}" data-state="unknown">${head}
<td><code>${view.cron}</code></td><td>${view.timeZone}</td><td colspan="4" class="muted">${view.problem ?? ''}</td><td></td></tr>`;
  }
  const state = String(job.state ?? 'STATE_UNSPECIFIED');
  const toggle = state === 'PAUSED' ? 'resume' : 'pause';
  const drift = job.schedule !== view.cron || (job.timeZone || 'UTC') !== view.timeZone;
  return html`<tr data-schedule="${view.id}" data-state="${state}">${head}
<td><code>${job.schedule}</code>${drift ? html` <span class="badge failed" title="declared: ${view.cron} (${view.timeZone})">differs from the code</span>` : ''}</td>
<td>${job.timeZone || 'UTC'}</td>
<td><span class="badge ${state === 'ENABLED' ? 'ok' : 'paused'}">${state}</span></td>
<td>${state === 'ENABLED' ? utcTime(timestampMs(job.scheduleTime)) : html`<span class="muted">paused</span>`}</td>
<td>${utcTime(timestampMs(job.lastAttemptTime))}</td>
<td>${lastOutcome(job)}</td>
<td class="actions">
<form class="inline" method="post" action="/admin/schedules/${view.id}/run">${csrf}<button type="submit">Run now</button></form>
<form class="inline" method="post" action="/admin/schedules/${view.id}/${toggle}">${csrf}<button class="secondary" type="submit">${toggle === 'pause' ? 'Pause' : 'Resume'}</button></form>
</td></tr>`;
}

export function schedulesPages(scope: FastifyInstance, deps: DashboardDeps): void {
  scope.get('/schedules', async (request, reply) => {
    const backend = deps.backend;
    if (!backend) return noBackend(reply, request, SCHEDULES_PAGE);
    const operator = operatorOf(request);
    const views = await readSchedules(deps, backend);
    const csrf = csrfField(operator);
    return sendPage(reply, {
      ...SCHEDULES_PAGE,
      operator,
      flash: takeFlash(request, reply),
      body: html`<div class="panel">
<table class="compact" data-table="schedules">
<caption>The schedules this service declares, as Cloud Scheduler jobs (${backend.target.projectId}, ${backend.target.location}).</caption>
<thead><tr><th scope="col">Schedule</th><th scope="col">Task</th><th scope="col">Cron</th><th scope="col">Time zone</th><th scope="col">State</th><th scope="col">Next run</th><th scope="col">Last run</th><th scope="col">Last outcome</th><th scope="col">Actions</th></tr></thead>
<tbody>${views.map((v) => scheduleRow(v, csrf))}</tbody>
</table>
<p class="muted">Run now pushes the job's task at once; pausing skips its scheduled runs until it is resumed.</p>
</div>`,
    });
  });

  const actions = {
    run: { audit: 'schedule.run_now', done: 'run now' },
    pause: { audit: 'schedule.pause', done: 'paused' },
    resume: { audit: 'schedule.resume', done: 'resumed' },
  } as const;
  for (const [action, what] of Object.entries(actions) as [keyof typeof actions, (typeof actions)['run']][]) {
    scope.post<{ Params: { name: string } }>(`/schedules/:name/${action}`, async (request, reply) => {
      const { name } = request.params;
      if (!deps.registry.schedules.some((s) => s.name === name)) return reply.code(404).send('no such schedule');
      const backend = deps.backend;
      if (!backend) return noBackend(reply, request, SCHEDULES_PAGE);
      const operator = operatorOf(request);
      const { scheduler } = backend.clients;
      const jobName = scheduler.jobPath(backend.target.projectId, backend.target.location, `${JOB_PREFIX}${name}`);
      const options = { timeout: BACKEND_TIMEOUT_MS };
      try {
        if (action === 'run') await scheduler.runJob({ name: jobName }, options);
        else if (action === 'pause') await scheduler.pauseJob({ name: jobName }, options);
        else await scheduler.resumeJob({ name: jobName }, options);
      } catch (err) {
        const verb = action === 'run' ? 'run' : action;
        return redirectWithFlash(reply, '/admin/schedules', `Could not ${verb} ${name}: ${callError(err)}`, true);
      }
      await audit(deps, operator.email, what.audit, name, { job: jobName });
      return redirectWithFlash(
        reply,
        '/admin/schedules',
        action === 'run' ? `Schedule ${name}: run started.` : `Schedule ${name} ${what.done}.`,
      );
    });
  }
}

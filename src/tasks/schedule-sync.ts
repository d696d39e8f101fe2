// `schedules sync`: the declared schedules as Cloud Scheduler jobs with HTTP targets to
// /tasks/{task}. The service owns the jobs whose id starts with JOB_PREFIX: it creates, updates and
// deletes those, and never touches another job.
import type { CloudSchedulerClient, protos } from '@google-cloud/scheduler';
import type { EnqueueTarget } from './enqueue.ts';
import type { SyncChange } from './queue-sync.ts';
import type { ScheduleDefinition } from './registry.ts';

type Job = protos.google.cloud.scheduler.v1.IJob;

/** Jobs with this id prefix belong to this service. */
export const JOB_PREFIX = 'backend-';
const NOT_FOUND = 5;

/** The job a schedule becomes. */
export function jobFor(schedule: ScheduleDefinition, name: string, target: EnqueueTarget): Job {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (target.auth === 'secret' && target.secret) headers['X-Task-Secret'] = target.secret;
  return {
    name,
    description: schedule.description,
    schedule: schedule.cron,
    timeZone: schedule.timeZone ?? 'UTC',
    httpTarget: {
      uri: `${target.publicBaseUrl}/tasks/${schedule.task}`,
      httpMethod: 'POST',
      headers,
      body: Buffer.from(JSON.stringify(schedule.payload)),
      ...(target.auth === 'secret'
        ? {}
        : { oidcToken: { serviceAccountEmail: target.invokerServiceAccount, audience: target.audience } }),
    },
    retryConfig: { retryCount: schedule.retryCount ?? 0 },
  };
}

/** What differs between the declared job and the one in Cloud Scheduler, as readable lines. */
function differences(want: Job, have: Job): string[] {
  const out: string[] = [];
  const cmp = (label: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a ?? null) !== JSON.stringify(b ?? null)) out.push(`${label}: ${show(b)} → ${show(a)}`);
  };
  cmp('schedule', want.schedule, have.schedule);
  cmp('timeZone', want.timeZone, have.timeZone);
  cmp('description', want.description, have.description);
  cmp('uri', want.httpTarget?.uri, have.httpTarget?.uri);
  cmp('body', text(want.httpTarget?.body), text(have.httpTarget?.body));
  cmp('oidcToken', want.httpTarget?.oidcToken, have.httpTarget?.oidcToken ?? undefined);
  cmp('headers', contentHeaders(want), contentHeaders(have));
  cmp('retryCount', want.retryConfig?.retryCount ?? 0, have.retryConfig?.retryCount ?? 0);
  return out;
}

export async function syncSchedules(
  client: Pick<
    CloudSchedulerClient,
    'getJob' | 'createJob' | 'updateJob' | 'deleteJob' | 'listJobs' | 'jobPath' | 'locationPath'
  >,
  target: EnqueueTarget,
  declared: readonly ScheduleDefinition[],
  options: { dryRun: boolean },
): Promise<SyncChange[]> {
  const parent = client.locationPath(target.projectId, target.location);
  const changes: SyncChange[] = [];
  const wanted = new Set<string>();
  for (const schedule of declared) {
    const name = client.jobPath(target.projectId, target.location, `${JOB_PREFIX}${schedule.name}`);
    wanted.add(name);
    const job = jobFor(schedule, name, target);
    let existing: Job | undefined;
    try {
      [existing] = await client.getJob({ name });
    } catch (err) {
      if ((err as { code?: number }).code !== NOT_FOUND) throw err;
    }
    if (!existing) {
      if (!options.dryRun) await client.createJob({ parent, job });
      changes.push({
        name: `${JOB_PREFIX}${schedule.name}`,
        action: 'create',
        details: [`${schedule.cron} (${job.timeZone}) → POST ${job.httpTarget?.uri}`],
      });
      continue;
    }
    const details = differences(job, existing);
    if (details.length > 0 && !options.dryRun) await client.updateJob({ job });
    changes.push({ name: `${JOB_PREFIX}${schedule.name}`, action: details.length ? 'update' : 'unchanged', details });
  }
  const [jobs] = await client.listJobs({ parent });
  for (const job of jobs) {
    const short = String(job.name).split('/').pop() ?? '';
    if (!short.startsWith(JOB_PREFIX) || wanted.has(String(job.name))) continue;
    if (!options.dryRun) await client.deleteJob({ name: String(job.name) });
    changes.push({ name: short, action: 'delete', details: ['no longer declared'] });
  }
  return changes;
}

const text = (b: Uint8Array | string | null | undefined) =>
  b === null || b === undefined
    ? undefined
    : typeof b === 'string'
      ? Buffer.from(b, 'base64').toString()
      : Buffer.from(b).toString();
const show = (v: unknown) => (v === undefined || v === null ? 'unset' : typeof v === 'string' ? v : JSON.stringify(v));
// Cloud Scheduler adds headers of its own (User-Agent…); compare the ones we set.
const contentHeaders = (job: Job) => {
  const h = job.httpTarget?.headers ?? {};
  return { 'Content-Type': h['Content-Type'], 'X-Task-Secret': h['X-Task-Secret'] ? '(set)' : undefined };
};

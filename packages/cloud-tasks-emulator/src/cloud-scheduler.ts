// Cloud Scheduler v1 jobs: unix-cron in a time zone, HTTP targets
// with OIDC, the X-CloudScheduler* headers, retries per RetryConfig that never run past the next
// scheduled time, never two runs of one job at once, and RunJob. RPCs take and return protobuf
// plain objects, the same from gRPC and REST.
import { backoffDelayMs } from './backoff.ts';
import type { EmulatorContext } from './context.ts';
import { isTimeZone, isValidSchedule, lastRunAtOrBefore, nextRunAfter } from './cron.ts';
import type { DeliveryResult } from './deliver.ts';
import { alreadyExists, Code, invalidArgument, notFound, unimplemented } from './errors.ts';
import { applyMask, type MaskRules, maskPaths } from './field-mask.ts';
import {
  authorization,
  type HttpMethod,
  type OAuthToken,
  type OidcToken,
  parseHttpTarget,
  renderTarget,
  userHeaders,
} from './http-target.ts';
import type { PersistedState } from './journal.ts';
import { parseJobName } from './names.ts';
import type { ProtoObject } from './protos.ts';
import { attemptStatus, checkParent, failure, paginate } from './requests.ts';
import { durationToMs, msToDuration, msToTimestamp, rfc3339Seconds } from './time.ts';

const MSG_JOB_NAME = 'Job name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/jobs/<JOB_ID>".';
const MSG_JOB_MISSING = 'Job not found.';
const MSG_SCHEDULE = 'Schedule or time zone is invalid.';

// Defaults and limits from job.proto and Cloud Scheduler's documented quotas (README, "What is emulated").
const DEFAULT_TIME_ZONE = 'Etc/UTC';
const MAX_RETRY_COUNT = 5;
const DEFAULT_MIN_BACKOFF_MS = 5_000;
const DEFAULT_MAX_BACKOFF_MS = 3_600_000;
const DEFAULT_MAX_DOUBLINGS = 5;
const DEFAULT_DEADLINE_MS = 3 * 60_000;
const MIN_DEADLINE_MS = 15_000;
const MAX_DEADLINE_MS = 30 * 60_000;
const MAX_DESCRIPTION = 500;
const MAX_JOB_BYTES = 1024 * 1024;
const MAX_PAGE = 500;

export interface JobRetry {
  retryCount: number;
  maxRetryDurationMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  maxDoublings: number;
}

/** One execution of a job: its attempts share the scheduled time. */
export interface RunJson {
  scheduleTime: number;
  attempts: number;
  firstAttemptTime: number;
  /** When the next retry is due; unset while an attempt is out. */
  nextAttemptAt?: number;
  /** Started by RunJob rather than by the schedule. */
  manual: boolean;
}

/** A job as journaled; the body travels as base64. */
export interface JobJson {
  name: string;
  description?: string;
  schedule: string;
  timeZone: string;
  url: string;
  method: HttpMethod;
  headers: Record<string, string>;
  body?: string;
  oidc?: OidcToken;
  oauth?: OAuthToken;
  retry: JobRetry;
  attemptDeadlineMs: number;
  state: 'ENABLED' | 'PAUSED';
  userUpdateTime: number;
  /** The next time the schedule fires (while ENABLED). */
  nextRunAt?: number;
  lastAttemptTime?: number;
  status?: { code: number; message: string };
  run?: RunJson;
  /** RunJob arrived while a run was going: run again once it ends. */
  manualPending?: boolean;
}

interface Job {
  json: JobJson;
  id: string;
  body: Buffer | undefined;
  inFlight: boolean;
}

export class CloudSchedulerService {
  readonly #ctx: EmulatorContext;
  readonly #jobs = new Map<string, Job>();

  constructor(ctx: EmulatorContext) {
    this.#ctx = ctx;
  }

  /** The RPCs, by method name in cloudscheduler.proto. */
  handlers(): Record<string, (request: ProtoObject) => ProtoObject | Promise<ProtoObject>> {
    return {
      ListJobs: (r) => this.listJobs(r),
      GetJob: (r) => renderJob(this.#job(r.name)),
      CreateJob: (r) => this.createJob(r),
      UpdateJob: (r) => this.updateJob(r),
      DeleteJob: (r) => this.deleteJob(r),
      PauseJob: (r) => this.pauseJob(r),
      ResumeJob: (r) => this.resumeJob(r),
      RunJob: (r) => this.runJob(r),
    };
  }

  listJobs(request: ProtoObject): ProtoObject {
    const parent = checkParent(request.parent, 'cloudscheduler.googleapis.com');
    const names = [...this.#jobs.keys()].filter((n) => n.startsWith(`${parent}/jobs/`)).sort();
    const { page, next } = paginate(names, request.pageSize, request.pageToken, MAX_PAGE);
    return { jobs: page.map((n) => renderJob(this.#jobs.get(n)!)), nextPageToken: next };
  }

  async createJob(request: ProtoObject): Promise<ProtoObject> {
    const parent = checkParent(request.parent, 'cloudscheduler.googleapis.com');
    const given: ProtoObject = request.job ?? {};
    const name = String(given.name ?? '');
    const parsed = parseJobName(name);
    if (!parsed) throw invalidArgument(MSG_JOB_NAME);
    if (parsed.parent !== parent) throw invalidArgument(`${name} must begin with ${parent}.`);
    if (this.#jobs.has(name)) throw alreadyExists(`Job ${name} already exists.`);
    const now = this.#now();
    const { json, body } = jobFromProto(name, given, now);
    json.state = 'ENABLED';
    json.nextRunAt = nextRunAfter(json.schedule, json.timeZone, now);
    const job: Job = { json, id: parsed.id, body, inFlight: false };
    this.#jobs.set(name, job);
    await this.#save(job);
    this.#ctx.events.emit('job:created', { job: name });
    this.#ctx.wake();
    return renderJob(job);
  }

  /** Masked fields come from the request; an empty mask replaces every field. A new schedule counts from now. */
  async updateJob(request: ProtoObject): Promise<ProtoObject> {
    const given: ProtoObject = request.job ?? {};
    const job = this.#job(given.name);
    const paths = maskPaths(request.updateMask);
    const merged = paths.length === 0 ? given : applyJobMask(renderJob(job), given, paths);
    const now = this.#now();
    const { json, body } = jobFromProto(job.json.name, merged, now);
    const previous = job.json;
    json.state = previous.state;
    if (previous.lastAttemptTime !== undefined) json.lastAttemptTime = previous.lastAttemptTime;
    if (previous.status) json.status = previous.status;
    if (previous.run) json.run = previous.run;
    if (previous.manualPending) json.manualPending = true;
    if (json.state === 'ENABLED') {
      json.nextRunAt =
        json.schedule === previous.schedule && json.timeZone === previous.timeZone && previous.nextRunAt !== undefined
          ? previous.nextRunAt
          : nextRunAfter(json.schedule, json.timeZone, now);
    }
    job.json = json;
    job.body = body;
    await this.#save(job);
    this.#ctx.events.emit('job:updated', { job: json.name });
    this.#ctx.wake();
    return renderJob(job);
  }

  async deleteJob(request: ProtoObject): Promise<ProtoObject> {
    const job = this.#job(request.name);
    this.#jobs.delete(job.json.name);
    if (this.#ctx.persistent) await this.#ctx.journal.append({ t: 'job-deleted', name: job.json.name });
    this.#ctx.events.emit('job:deleted', { job: job.json.name });
    return {};
  }

  /** Stops scheduling; an attempt already out finishes, but a pending retry is dropped. */
  async pauseJob(request: ProtoObject): Promise<ProtoObject> {
    const job = this.#job(request.name);
    const json = job.json;
    json.state = 'PAUSED';
    json.userUpdateTime = this.#now();
    delete json.nextRunAt;
    if (json.run && !job.inFlight) delete json.run;
    await this.#save(job);
    this.#ctx.events.emit('job:paused', { job: json.name });
    return renderJob(job);
  }

  async resumeJob(request: ProtoObject): Promise<ProtoObject> {
    const job = this.#job(request.name);
    const json = job.json;
    const now = this.#now();
    json.state = 'ENABLED';
    json.userUpdateTime = now;
    json.nextRunAt = nextRunAfter(json.schedule, json.timeZone, now);
    await this.#save(job);
    this.#ctx.events.emit('job:resumed', { job: json.name });
    this.#ctx.wake();
    return renderJob(job);
  }

  /** Runs the job now (a paused one too); if a run is going, the forced one follows it. */
  runJob(request: ProtoObject): ProtoObject {
    const job = this.#job(request.name);
    if (job.json.run || job.inFlight) {
      job.json.manualPending = true;
    } else {
      this.#startRun(job, this.#now(), true);
    }
    return renderJob(job);
  }

  // ── Dispatch ────────────────────────────────────────────────────────────────────────────

  /** Starts due runs and due retries; `seen` (from tick()) keeps a job to one attempt per call. */
  pump(now: number, seen?: Set<object>): void {
    for (const job of this.#jobs.values()) {
      if (job.inFlight || seen?.has(job)) continue;
      const json = job.json;
      if (json.run) {
        if (json.run.nextAttemptAt !== undefined && json.run.nextAttemptAt <= now) {
          seen?.add(job);
          this.#attempt(job, now);
        }
      } else if (json.manualPending) {
        seen?.add(job);
        delete json.manualPending;
        this.#startRun(job, now, true);
      } else if (json.state === 'ENABLED' && json.nextRunAt !== undefined && json.nextRunAt <= now) {
        seen?.add(job);
        json.run = { scheduleTime: json.nextRunAt, attempts: 0, firstAttemptTime: now, manual: false };
        this.#attempt(job, now);
      }
    }
  }

  nextWakeAt(_now: number): number | undefined {
    let next: number | undefined;
    for (const job of this.#jobs.values()) {
      if (job.inFlight) continue;
      const json = job.json;
      const at = json.run ? json.run.nextAttemptAt : json.state === 'ENABLED' ? json.nextRunAt : undefined;
      if (at !== undefined && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  #startRun(job: Job, now: number, manual: boolean): void {
    // A forced run carries its own time: the real service may omit the header or send the next run's time.
    job.json.run = { scheduleTime: Math.floor(now / 1000) * 1000, attempts: 0, firstAttemptTime: now, manual };
    this.#attempt(job, now);
  }

  #attempt(job: Job, now: number): void {
    const json = job.json;
    const run = json.run!;
    const ctx = this.#ctx;
    run.attempts += 1;
    delete run.nextAttemptAt;
    job.inFlight = true;
    json.lastAttemptTime = now;

    const bearer = authorization(ctx, json, now);
    const headers = userHeaders(json.headers, bearer !== undefined);
    // Unlike Cloud Tasks, Cloud Scheduler gives a body a default Content-Type.
    if (job.body && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
      headers['Content-Type'] = 'application/octet-stream';
    }
    headers['User-Agent'] = 'Google-Cloud-Scheduler';
    headers['X-CloudScheduler'] = 'true';
    headers['X-CloudScheduler-JobName'] = job.id;
    headers['X-CloudScheduler-ScheduleTime'] = rfc3339Seconds(run.scheduleTime);
    if (bearer) headers.Authorization = bearer;

    const pending = ctx.deliverer.deliver({
      url: json.url,
      method: json.method,
      headers,
      body: job.body,
      timeoutMs: json.attemptDeadlineMs,
    });
    ctx.attempts.track(pending, now + json.attemptDeadlineMs, (result) => this.#finish(job, run, result));
    ctx.events.emit('job:dispatched', {
      job: json.name,
      scheduleTime: run.scheduleTime,
      attempt: run.attempts,
      url: json.url,
      dispatchTime: now,
      forced: run.manual,
    });
  }

  #finish(job: Job, run: RunJson, result: DeliveryResult): void {
    job.inFlight = false;
    if (this.#jobs.get(job.json.name) !== job) return; // deleted meanwhile
    const json = job.json;
    const now = this.#now();
    const { status } = result;
    const event = { job: json.name, scheduleTime: run.scheduleTime, attempt: run.attempts };
    if (status !== undefined && status >= 200 && status < 300) {
      json.status = { code: Code.OK, message: '' };
      this.#endRun(job, run, now);
      this.#ctx.events.emit('job:succeeded', { ...event, status });
      return;
    }
    json.status = attemptStatus(result);
    const retry = json.retry;
    const countDone = run.attempts - 1 >= retry.retryCount;
    const durationDone = retry.maxRetryDurationMs === 0 || now - run.firstAttemptTime >= retry.maxRetryDurationMs;
    // A paused job's pending retries are dropped, and retries never run past the next scheduled execution.
    if (json.state === 'ENABLED' && !(countDone && durationDone)) {
      const delayMs = backoffDelayMs(run.attempts, retry);
      const retryAt = now + delayMs;
      const nextScheduled = run.manual ? json.nextRunAt : nextRunAfter(json.schedule, json.timeZone, run.scheduleTime);
      if (nextScheduled === undefined || retryAt < nextScheduled) {
        run.nextAttemptAt = retryAt;
        this.#write(job);
        this.#ctx.events.emit('job:retry-scheduled', { ...event, ...failure(result), retryAt, delayMs });
        return;
      }
    }
    this.#endRun(job, run, now);
    this.#ctx.events.emit('job:failed', { ...event, ...failure(result) });
  }

  /**
   * After a scheduled run, the next one is the schedule's next time after it; if the run overran
   * that, the latest missed time runs at once (late, never alongside, never a burst of catch-ups).
   */
  #endRun(job: Job, run: RunJson, now: number): void {
    const json = job.json;
    delete json.run;
    if (!run.manual && json.state === 'ENABLED') {
      let next = nextRunAfter(json.schedule, json.timeZone, run.scheduleTime);
      if (next <= now) next = lastRunAtOrBefore(json.schedule, json.timeZone, now);
      json.nextRunAt = next;
    }
    this.#write(job);
  }

  // ── Lookups and persistence ─────────────────────────────────────────────────────────────

  #now(): number {
    return this.#ctx.clock.now();
  }

  #job(nameValue: unknown): Job {
    const name = String(nameValue ?? '');
    if (!parseJobName(name)) throw invalidArgument(MSG_JOB_NAME);
    const job = this.#jobs.get(name);
    if (!job) throw notFound(MSG_JOB_MISSING);
    return job;
  }

  #save(job: Job): Promise<void> | undefined {
    return this.#ctx.persistent ? this.#ctx.journal.append({ t: 'job', job: jobJson(job) }) : undefined;
  }

  #write(job: Job): void {
    if (this.#ctx.persistent) this.#ctx.journal.write({ t: 'job', job: jobJson(job) });
  }

  capture(): Pick<PersistedState, 'jobs'> {
    return { jobs: [...this.#jobs.values()].map(jobJson) };
  }

  /** Rebuilds jobs from a data directory; an attempt cut off by a crash is retried at once. */
  restore(state: PersistedState, now: number): void {
    for (const stored of state.jobs as JobJson[]) {
      const parsed = parseJobName(stored.name);
      if (!parsed) continue;
      const { body, ...json } = stored;
      if (json.run && json.run.nextAttemptAt === undefined) json.run.nextAttemptAt = now;
      this.#jobs.set(json.name, {
        json,
        id: parsed.id,
        body: body ? Buffer.from(body, 'base64') : undefined,
        inFlight: false,
      });
    }
  }
}

function jobJson(job: Job): JobJson {
  return job.body ? { ...job.json, body: job.body.toString('base64') } : job.json;
}

/** Validates a protobuf Job into the stored shape (state and run bookkeeping are the caller's). */
function jobFromProto(name: string, given: ProtoObject, now: number): { json: JobJson; body: Buffer | undefined } {
  const description = String(given.description ?? '');
  if (description.length > MAX_DESCRIPTION) {
    throw invalidArgument(`Job.description must be at most ${MAX_DESCRIPTION} characters.`);
  }
  const schedule = String(given.schedule ?? '').trim();
  const timeZone = String(given.timeZone || DEFAULT_TIME_ZONE);
  if (schedule === '' || !isTimeZone(timeZone) || !isValidSchedule(schedule, timeZone)) {
    throw invalidArgument(MSG_SCHEDULE);
  }
  if (given.pubsubTarget || given.appEngineHttpTarget) {
    throw unimplemented('Only HTTP targets are emulated; Pub/Sub and App Engine targets are not.');
  }
  if (!given.httpTarget) throw invalidArgument('Job.httpTarget is required.');
  const { size, body, ...target } = parseHttpTarget(given.httpTarget, 'HttpTarget', 'uri');
  if (size + description.length + schedule.length > MAX_JOB_BYTES) throw invalidArgument('Job size too large.');

  const retry: ProtoObject = given.retryConfig ?? {};
  const retryCount = Number(retry.retryCount ?? 0);
  if (retryCount < 0 || retryCount > MAX_RETRY_COUNT) {
    throw invalidArgument(`RetryConfig.retryCount must be between 0 and ${MAX_RETRY_COUNT}.`);
  }
  const maxDoublings = Number(retry.maxDoublings ?? 0);
  if (maxDoublings < 0) throw invalidArgument('RetryConfig.maxDoublings cannot be negative.');
  const durations: Record<string, number> = {};
  for (const field of ['maxRetryDuration', 'minBackoffDuration', 'maxBackoffDuration']) {
    const ms = durationToMs(retry[field]) ?? 0;
    if (ms < 0) throw invalidArgument(`RetryConfig.${field} cannot be negative.`);
    durations[field] = ms;
  }
  const jobRetry: JobRetry = {
    retryCount,
    maxRetryDurationMs: durations.maxRetryDuration!,
    minBackoffMs: durations.minBackoffDuration || DEFAULT_MIN_BACKOFF_MS,
    maxBackoffMs: durations.maxBackoffDuration || DEFAULT_MAX_BACKOFF_MS,
    maxDoublings: maxDoublings || DEFAULT_MAX_DOUBLINGS,
  };
  if (jobRetry.minBackoffMs > jobRetry.maxBackoffMs) {
    throw invalidArgument(
      'RetryConfig.minBackoffDuration must be less than or equal to RetryConfig.maxBackoffDuration.',
    );
  }
  const deadline = durationToMs(given.attemptDeadline) ?? 0;
  if (deadline !== 0 && (deadline < MIN_DEADLINE_MS || deadline > MAX_DEADLINE_MS)) {
    throw invalidArgument('Job.attemptDeadline must be between 15s and 30m for HTTP targets.');
  }
  const json: JobJson = {
    name,
    schedule,
    timeZone,
    ...target,
    retry: jobRetry,
    attemptDeadlineMs: deadline || DEFAULT_DEADLINE_MS,
    state: 'ENABLED',
    userUpdateTime: now,
  };
  if (description !== '') json.description = description;
  return { json, body };
}

function renderJob(job: Job): ProtoObject {
  const json = job.json;
  const target = renderTarget(json, 'uri');
  if (job.body) target.body = job.body;
  const out: ProtoObject = {
    name: json.name,
    httpTarget: target,
    schedule: json.schedule,
    timeZone: json.timeZone,
    userUpdateTime: msToTimestamp(json.userUpdateTime),
    state: json.state,
    retryConfig: {
      retryCount: json.retry.retryCount,
      maxRetryDuration: msToDuration(json.retry.maxRetryDurationMs),
      minBackoffDuration: msToDuration(json.retry.minBackoffMs),
      maxBackoffDuration: msToDuration(json.retry.maxBackoffMs),
      maxDoublings: json.retry.maxDoublings,
    },
    attemptDeadline: msToDuration(json.attemptDeadlineMs),
  };
  if (json.description) out.description = json.description;
  if (json.status) out.status = json.status;
  if (json.lastAttemptTime !== undefined) out.lastAttemptTime = msToTimestamp(json.lastAttemptTime);
  // The next time anything happens: a pending retry, or the schedule's next time (job.proto schedule_time).
  const next = json.run?.nextAttemptAt ?? (json.state === 'ENABLED' ? json.nextRunAt : undefined);
  if (next !== undefined) out.scheduleTime = msToTimestamp(next);
  return out;
}

const JOB_MASK: MaskRules = {
  allowed: new Set([
    'description',
    'schedule',
    'timeZone',
    'httpTarget',
    'retryConfig',
    'attemptDeadline',
    'httpTarget.uri',
    'httpTarget.httpMethod',
    'httpTarget.headers',
    'httpTarget.body',
    'httpTarget.oidcToken',
    'httpTarget.oauthToken',
    'retryConfig.retryCount',
    'retryConfig.maxRetryDuration',
    'retryConfig.minBackoffDuration',
    'retryConfig.maxBackoffDuration',
    'retryConfig.maxDoublings',
  ]),
  ignored: new Set(['name', 'state', 'status', 'scheduleTime', 'lastAttemptTime', 'userUpdateTime']),
};

function applyJobMask(current: ProtoObject, given: ProtoObject, paths: string[]): ProtoObject {
  const out = applyMask(current, given, paths, JOB_MASK);
  // The two token types are a oneof: setting one clears the other.
  if (paths.includes('httpTarget.oidcToken') && out.httpTarget?.oidcToken) delete out.httpTarget.oauthToken;
  if (paths.includes('httpTarget.oauthToken') && out.httpTarget?.oauthToken) delete out.httpTarget.oidcToken;
  return out;
}

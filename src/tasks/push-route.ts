// POST /tasks/{task}: the one way work runs. Authenticate before the body is read,
// validate with the task's schema, claim the run in task_runs, run the handler inside the request
// (Cloud Run gives no CPU after the response), and answer what Cloud Tasks should do next.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { Db, Queryable } from '../db/db.ts';
import { DatabaseUnavailableError, errorBody } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { otel } from '../observability/otel-api.ts';
import type { Telemetry } from '../observability/telemetry.ts';
import type { AnyTask, Delivery, Enqueue, TaskContext, TaskServices } from './define-task.ts';
import { DEFAULT_DEADLINE_SECONDS, describeIssues } from './define-task.ts';
import { classifyFailure, DATABASE_RETRY_AFTER_SECONDS, responseFor, type TaskOutcome } from './outcome.ts';
import type { PushAuthenticator } from './push-auth.ts';
import type { TaskRegistry } from './registry.ts';
import type { TaskEvents } from './task-events.ts';
import { type AttemptEntry, type ClaimInput, taskRuns } from './task-runs.repository.ts';
import { TaskRunBatcher } from './task-runs-batch.ts';

export interface PushRouteDeps {
  registry: TaskRegistry;
  db: Db;
  clock: Clock;
  auth: PushAuthenticator;
  enqueue: Enqueue;
  services: TaskServices;
  events: TaskEvents;
  telemetry: Telemetry;
}

/** The lease outlives Cloud Tasks' dispatch deadline, so a retry never overlaps a live attempt. */
export const LEASE_SLACK_MS = 60_000;

/** The handler must finish this long before the dispatch deadline, to record its outcome. */
export function handlerDeadlineMs(task: AnyTask): number {
  const dispatchMs = (task.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS) * 1000;
  return dispatchMs - Math.min(10_000, dispatchMs * 0.2);
}

/** How long a claim owns its run: past the dispatch deadline, when Cloud Tasks may deliver again. */
export function leaseMs(task: AnyTask): number {
  return (task.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS) * 1000 + LEASE_SLACK_MS;
}

class FencedError extends Error {}
class HandlerDeadlineError extends Error {}

/** The route's dependencies and its group-committed task_runs writes (one per app). */
type RouteDeps = PushRouteDeps & { runs: TaskRunBatcher };

export function pushRoutes(app: FastifyInstance, pushDeps: PushRouteDeps): void {
  // Plain tasks' claims and completions share statements with concurrent deliveries.
  const deps: RouteDeps = { ...pushDeps, runs: new TaskRunBatcher(pushDeps.db) };
  app.register(async (scope) => {
    // The body stays raw bytes: a body that is not JSON is a dead run (2xx), not a 400 that
    // Cloud Tasks would retry forever. Cloud Tasks sends no Content-Type unless the task set one.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    scope.addHook('onRequest', async (request, reply) => {
      const result = await deps.auth.authenticate(request.headers);
      if (result.ok) return;
      // Named only when registered: the path is the caller's, and a metric's labels must stay few.
      const name = (request.params as { task?: string }).task;
      deps.telemetry.metrics.recordRun(
        name && deps.registry.tasks.has(name) ? name : '(unknown)',
        'unauthenticated',
        0,
      );
      request.log.warn(
        { authFailure: result.reason, detail: result.detail },
        `task push refused: ${result.reason} (${result.detail})`,
      );
      return reply
        .code(401)
        .header('x-task-outcome', 'retry')
        .send(errorBody('UNAUTHENTICATED', 'The request does not carry valid task credentials.'));
    });

    scope.post<{ Params: { task: string } }>('/tasks/:task', async (request, reply) => {
      const task = deps.registry.tasks.get(request.params.task);
      if (!task) {
        return reply
          .code(404)
          .header('x-task-outcome', 'retry')
          .send(errorBody('UNKNOWN_TASK', `No task named "${request.params.task}".`));
      }
      const outcome = await runObserved(deps, task, request);
      const response = responseFor(outcome, new Date(deps.clock.now()));
      return reply.code(response.status).headers(response.headers).send(response.body);
    });
  });
}

/**
 * A delivery inside its own span (a child of the request's, so of the trace that enqueued the
 * task), with the handler's enqueues inside it; the outcome counted and timed by task.
 */
async function runObserved(deps: RouteDeps, task: AnyTask, request: FastifyRequest): Promise<TaskOutcome> {
  const span = deps.telemetry.tracer.startSpan(`task ${task.name}`);
  const started = performance.now();
  let outcome: TaskOutcome | undefined;
  try {
    const { context, trace } = otel;
    outcome = await context.with(trace.setSpan(context.active(), span), () => runDelivery(deps, task, request));
    return outcome;
  } finally {
    const kind = outcome?.kind ?? 'error';
    deps.telemetry.metrics.recordRun(task.name, kind, (performance.now() - started) / 1000);
    if (span.isRecording()) {
      const delivery = readDelivery(request.headers);
      const attempt =
        delivery.retryCount !== undefined ? delivery.retryCount + 1 : (outcome as { attempt?: number })?.attempt;
      span.setAttributes({
        'task.name': task.name,
        'task.outcome': kind,
        ...(attempt !== undefined ? { 'task.attempt': attempt } : {}),
        ...(outcome?.runId !== undefined ? { 'task.run_id': outcome.runId } : {}),
        ...(delivery.taskName ? { 'cloud_tasks.task_name': delivery.taskName } : {}),
        ...(delivery.queueName ? { 'cloud_tasks.queue_name': delivery.queueName } : {}),
      });
      if (!outcome || outcome.kind === 'retry' || outcome.kind === 'dead') {
        span.setStatus({ code: otel.SpanStatusCode.ERROR, message: outcome?.error ?? 'the delivery threw' });
      }
    }
    span.end();
  }
}

async function runDelivery(deps: RouteDeps, task: AnyTask, request: FastifyRequest): Promise<TaskOutcome> {
  const delivery = readDelivery(request.headers);
  const now = new Date(deps.clock.now());
  const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  const parsed = parsePayload(task, raw);
  const base = {
    task: task.name,
    payload: parsed.json,
    payloadHash: parsed.hash,
    cloudTaskName: delivery.taskName ?? null,
    queueName: delivery.queueName ?? null,
    delivery: deliveryRecord(request.headers),
    now,
  };
  // No child logger per delivery: a pino child costs on every request (bindings run through the
  // redaction), and most deliveries log nothing. Each warn line names its task instead.
  const log = request.log as Logger;

  if (!parsed.ok) {
    const key = delivery.taskName ?? `invalid:${parsed.hash.slice(0, 32)}`;
    return refuse(deps, log, { ...base, key }, parsed.error);
  }
  // A key from the payload may hold U+0000, which PostgreSQL text refuses: it is stored as U+FFFD.
  const key = (task.idempotencyKey?.(parsed.payload, delivery) ?? delivery.key ?? delivery.taskName)?.replaceAll(
    '\u0000',
    '\uFFFD',
  );
  if (!key) {
    return refuse(
      deps,
      log,
      { ...base, key: `unkeyed:${parsed.hash.slice(0, 32)}` },
      'no idempotency key: the payload names none and the request has neither X-Task-Key nor X-CloudTasks-TaskName',
    );
  }
  const claim: ClaimInput = { ...base, key, leaseMs: leaseMs(task) };
  const maxAttempts = deps.registry.maxAttempts(task, delivery.scheduled);
  const run = task.transactional ? runTransactional : runPlain;
  try {
    return await run(deps, task, claim, parsed.payload, delivery, maxAttempts, log);
  } catch (err) {
    if (err instanceof DatabaseUnavailableError) {
      log.warn({ err, task: task.name }, 'database unavailable; the delivery will be retried');
      return {
        kind: 'retry',
        runId: undefined,
        error: err.message,
        retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
        code: 'DATABASE_UNAVAILABLE',
      };
    }
    throw err;
  }
}

type Runner = (
  deps: RouteDeps,
  task: AnyTask,
  claim: ClaimInput,
  payload: unknown,
  delivery: Delivery,
  maxAttempts: number,
  log: Logger,
) => Promise<TaskOutcome>;

const runPlain: Runner = async (deps, task, claim, payload, delivery, maxAttempts, log) => {
  const claimed = await deps.runs.claim(claim);
  if (claimed.kind !== 'claimed') return notClaimed(deps, claim, claimed, log);
  const event = { task: task.name, key: claim.key, runId: claimed.runId, attempt: claimed.attempt };
  deps.events.emit('run:claimed', event);
  const attempt = attemptNumber(delivery, claimed.attempt);
  const started = deps.clock.now();
  try {
    const result = await invoke(
      deps,
      task,
      { payload, delivery, runId: claimed.runId, key: claim.key, attempt },
      {
        lastAttempt: isLastAttempt(attempt, maxAttempts),
        db: deps.db,
        log,
      },
    );
    const entry = attemptEntry(claimed.attempt, 'succeeded', started, deps.clock.now(), null, delivery);
    const finished = await deps.runs.finish({
      runId: claimed.runId,
      attempt: claimed.attempt,
      status: 'succeeded',
      result,
      entry,
    });
    if (!finished) return fenced(deps, claim, claimed.runId, claimed.attempt, log);
    deps.events.emit('run:succeeded', { ...event, durationMs: entry.durationMs });
    return { kind: 'succeeded', runId: claimed.runId, attempt: claimed.attempt };
  } catch (err) {
    if (err instanceof DatabaseUnavailableError) throw err;
    const failure = classifyFailure(err, isLastAttempt(attempt, maxAttempts));
    const entry = attemptEntry(claimed.attempt, failure.status, started, deps.clock.now(), failure.message, delivery);
    const finished = await deps.runs.finish({
      runId: claimed.runId,
      attempt: claimed.attempt,
      status: failure.status,
      entry,
    });
    if (!finished) return fenced(deps, claim, claimed.runId, claimed.attempt, log);
    return failed(deps, log, event, failure, err);
  }
};

const runTransactional: Runner = async (deps, task, claim, payload, delivery, maxAttempts, log) => {
  let claimedAttempt: number | undefined;
  let runId: number | undefined;
  const started = deps.clock.now();
  try {
    return await deps.db.transaction(async (tx) => {
      const claimed = await taskRuns.claimRun(tx, claim);
      if (claimed.kind !== 'claimed') return notClaimed(deps, claim, claimed, log);
      claimedAttempt = claimed.attempt;
      runId = claimed.runId;
      const event = { task: task.name, key: claim.key, runId, attempt: claimed.attempt };
      deps.events.emit('run:claimed', event);
      const attempt = attemptNumber(delivery, claimed.attempt);
      const result = await invoke(
        deps,
        task,
        { payload, delivery, runId: claimed.runId, key: claim.key, attempt },
        {
          lastAttempt: isLastAttempt(attempt, maxAttempts),
          db: tx,
          log,
        },
      );
      const entry = attemptEntry(claimed.attempt, 'succeeded', started, deps.clock.now(), null, delivery);
      const finished = await taskRuns.finishAttempt(tx, {
        runId: claimed.runId,
        attempt: claimed.attempt,
        status: 'succeeded',
        result,
        entry,
      });
      // Rolls back the handler's writes with it: only the delivery that holds the run commits.
      if (!finished) throw new FencedError();
      deps.events.emit('run:succeeded', { ...event, durationMs: entry.durationMs });
      return { kind: 'succeeded', runId: claimed.runId, attempt: claimed.attempt } satisfies TaskOutcome;
    });
  } catch (err) {
    if (err instanceof FencedError) return fenced(deps, claim, runId, claimedAttempt, log);
    if (err instanceof DatabaseUnavailableError || claimedAttempt === undefined) throw err;
    // The handler failed: its writes and the claim rolled back together; record the failure.
    const attempt = attemptNumber(delivery, claimedAttempt);
    const failure = classifyFailure(err, isLastAttempt(attempt, maxAttempts));
    const entry = attemptEntry(1, failure.status, started, deps.clock.now(), failure.message, delivery);
    const recorded = await taskRuns.recordFailedAttempt(deps.db, { ...claim, status: failure.status, entry });
    if (!recorded) return fenced(deps, claim, runId, claimedAttempt, log);
    const event = { task: task.name, key: claim.key, runId: recorded.runId, attempt: recorded.attempt };
    return failed(deps, log, event, failure, err);
  }
};

async function invoke(
  deps: PushRouteDeps,
  task: AnyTask,
  run: { payload: unknown; delivery: Delivery; runId: number; key: string; attempt: number },
  how: { lastAttempt: boolean; db: Queryable; log: Logger },
): Promise<unknown> {
  const { payload, delivery, runId, key, attempt } = run;
  const { lastAttempt, db, log: parentLog } = how;
  const controller = new AbortController();
  const deadlineMs = handlerDeadlineMs(task);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new HandlerDeadlineError(`handler deadline of ${deadlineMs} ms exceeded`));
      reject(controller.signal.reason);
    }, deadlineMs);
  });
  let childLog: Logger | undefined;
  const ctx: TaskContext<unknown> = {
    payload,
    attempt,
    lastAttempt,
    task: task.name,
    runId,
    idempotencyKey: key,
    delivery,
    signal: controller.signal,
    db,
    clock: deps.clock,
    // Created on first use: most handlers never log.
    get log() {
      childLog ??= parentLog.child({ task: task.name, runId, attempt, key });
      return childLog;
    },
    enqueue: deps.enqueue,
    services: deps.services,
  };
  try {
    return await Promise.race([task.handler(ctx), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function refuse(
  deps: PushRouteDeps,
  log: Logger,
  input: Omit<ClaimInput, 'leaseMs'>,
  error: string,
): Promise<TaskOutcome> {
  const runId = await taskRuns.recordRefused(deps.db, { ...input, error });
  log.warn({ task: input.task, runId, key: input.key, error }, `task refused as dead: ${error}`);
  deps.events.emit('run:dead', { task: input.task, key: input.key, runId, attempt: undefined, error });
  return { kind: 'dead', runId, error };
}

function notClaimed(
  deps: PushRouteDeps,
  claim: ClaimInput,
  claimed: Exclude<Awaited<ReturnType<typeof taskRuns.claimRun>>, { kind: 'claimed' }>,
  log: Logger,
): TaskOutcome {
  const event = { task: claim.task, key: claim.key, runId: claimed.runId, attempt: undefined };
  switch (claimed.kind) {
    case 'duplicate':
      deps.events.emit('run:duplicate', event);
      return { kind: 'duplicate', runId: claimed.runId, status: claimed.status };
    case 'busy':
      deps.events.emit('run:busy', event);
      return { kind: 'busy', runId: claimed.runId, leaseExpiresAt: claimed.leaseExpiresAt };
    case 'conflict': {
      const error = `idempotency key "${claim.key}" was first used with a different payload (run ${claimed.runId})`;
      log.warn({ task: claim.task, runId: claimed.runId, key: claim.key }, error);
      deps.events.emit('run:dead', { ...event, error });
      return { kind: 'dead', runId: claimed.runId, error };
    }
  }
}

function fenced(
  deps: PushRouteDeps,
  claim: ClaimInput,
  runId: number | undefined,
  attempt: number | undefined,
  log: Logger,
): TaskOutcome {
  log.warn(
    { task: claim.task, runId, attempt },
    'attempt lost its lease to a newer delivery; its outcome was discarded',
  );
  deps.events.emit('run:fenced', { task: claim.task, key: claim.key, runId, attempt });
  return { kind: 'busy', runId: runId ?? 0, leaseExpiresAt: claim.now };
}

function failed(
  deps: PushRouteDeps,
  log: Logger,
  event: { task: string; key: string; runId: number; attempt: number },
  failure: ReturnType<typeof classifyFailure>,
  err: unknown,
): TaskOutcome {
  if (failure.status === 'dead') {
    log.warn({ err, task: event.task, runId: event.runId, attempt: event.attempt }, `task dead: ${failure.message}`);
    deps.events.emit('run:dead', { ...event, error: failure.message });
    return { kind: 'dead', runId: event.runId, error: failure.message };
  }
  log.warn(
    { err, task: event.task, runId: event.runId, attempt: event.attempt },
    `task attempt failed: ${failure.message}`,
  );
  deps.events.emit('run:failed', { ...event, error: failure.message });
  return {
    kind: 'retry',
    runId: event.runId,
    error: failure.message,
    code: failure.code,
    ...(failure.retryAfterSeconds !== undefined ? { retryAfterSeconds: failure.retryAfterSeconds } : {}),
  };
}

const isLastAttempt = (attempt: number, maxAttempts: number) => maxAttempts !== -1 && attempt >= maxAttempts;

/** The attempt number people count: Cloud Tasks' RetryCount + 1 (which, unlike ExecutionCount, counts 5xx). */
function attemptNumber(delivery: Delivery, runAttempt: number): number {
  return delivery.retryCount !== undefined ? delivery.retryCount + 1 : runAttempt;
}

function attemptEntry(
  attempt: number,
  status: AttemptEntry['status'],
  started: number,
  finished: number,
  error: string | null,
  delivery: Delivery,
): AttemptEntry {
  return {
    attempt,
    status,
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date(finished).toISOString(),
    durationMs: finished - started,
    error,
    retryCount: delivery.retryCount ?? null,
  };
}

type Parsed =
  | { ok: true; payload: unknown; json: unknown; hash: string }
  | { ok: false; error: string; json: unknown; hash: string };

function parsePayload(task: AnyTask, raw: Buffer): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    const hash = createHash('sha256').update(raw).digest('hex');
    return { ok: false, error: `body is not JSON (${(err as Error).message})`, json: null, hash };
  }
  const hash = payloadHash(json);
  const result: z.ZodSafeParseResult<unknown> = task.payload.safeParse(json);
  if (!result.success) {
    const issues = describeIssues(result.error);
    return { ok: false, error: `payload does not match ${task.name}: ${issues}`, json, hash };
  }
  return { ok: true, payload: result.data, json, hash };
}

/** What task_runs.payload_hash holds for a JSON payload. */
export function payloadHash(json: unknown): string {
  return createHash('sha256').update(canonicalJson(json)).digest('hex');
}

/** JSON with object keys sorted, so the same payload always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

type Headers = Record<string, string | string[] | undefined>;
const first = (h: Headers, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};
/** The largest count header kept: task_attempts.retry_count is a PostgreSQL integer. Cloud Tasks never
 * sends more; a larger one is read as absent (the header is informative) rather than failing the run. */
const MAX_COUNT_HEADER = 2_147_483_647;
const int = (v: string | undefined) => {
  if (v === undefined || !/^\d{1,10}$/.test(v)) return undefined;
  const n = Number(v);
  return n <= MAX_COUNT_HEADER ? n : undefined;
};

/** The X-CloudTasks-* / X-CloudScheduler-* headers: informative, never trusted for authentication. */
export function readDelivery(headers: Headers): Delivery {
  const scheduled = first(headers, 'x-cloudscheduler') === 'true';
  const eta = Number.parseFloat(first(headers, 'x-cloudtasks-tasketa') ?? '');
  const scheduleTime = Date.parse(first(headers, 'x-cloudscheduler-scheduletime') ?? '');
  return {
    key: first(headers, 'x-task-key') || undefined,
    queueName: first(headers, 'x-cloudtasks-queuename'),
    taskName: first(headers, 'x-cloudtasks-taskname') ?? first(headers, 'x-cloudscheduler-jobname'),
    retryCount: int(first(headers, 'x-cloudtasks-taskretrycount')),
    executionCount: int(first(headers, 'x-cloudtasks-taskexecutioncount')),
    eta: Number.isFinite(eta) ? new Date(eta * 1000) : undefined,
    scheduleTime: Number.isFinite(scheduleTime) ? new Date(scheduleTime) : undefined,
    scheduled,
  };
}

function deliveryRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (
      (name.startsWith('x-cloudtasks-') || name.startsWith('x-cloudscheduler') || name === 'x-task-key') &&
      value !== undefined
    ) {
      out[name] = Array.isArray(value) ? value.join(',') : value;
    }
  }
  return out;
}

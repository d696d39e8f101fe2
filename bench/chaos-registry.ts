// The task registry of the chaos run (bench/chaos.bench.ts): the production one plus two test-only
// tasks, every handler wrapped so that a seeded share of its calls fails transiently. Test-only:
// nothing in src/ imports this file; bench/chaos-service.ts puts it in place of
// src/task-registry.ts for its own process, and the chaos script enqueues with it.
//
//   chaos.effect        transactional: claim, handler and completion in one transaction, so its
//                       effect (one row of chaos_effects, a table WITHOUT a unique key) exists
//                       exactly once only if the task system keeps its promise: a second row is
//                       a duplicate the system let through. Some spawn a child chaos.effect
//                       through the run's transactional outbox; a poison one dies on purpose.
//   chaos.keyed_effect  a plain task (the group-committed push path, leases): its effect is keyed
//                       (chaos_keyed_effects' primary key), as the plain tasks' rule asks, and a
//                       refused second write is counted in chaos_refusals.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  HOLD_SWEEP_AFTER_SECONDS,
  queues as productionQueues,
  tasks as productionTasks,
} from '../src/task-registry.ts';
import type { AnyTask, EnqueueOptions } from '../src/tasks/define-task.ts';
import { defineTask } from '../src/tasks/define-task.ts';
import { createRegistry, type QueueDefinition, type ScheduleDefinition } from '../src/tasks/registry.ts';
import { NonRetryableError } from '../src/tasks/task-errors.ts';

export { HOLD_SWEEP_AFTER_SECONDS };

/**
 * No schedules: their moments are the wall clock's, not the seed's, and a scheduled run killed
 * mid-attempt with no retry left stays running until its lease ends (minutes), which the run's
 * "nothing unfinished" check would wait for. The chaos run is about tasks.
 */
export const schedules: readonly ScheduleDefinition[] = [];

/** The tables the chaos tasks write; the script creates them (they are no migration's). */
export const CHAOS_TABLES_SQL = `
  CREATE TABLE chaos_effects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL,
    run_id bigint NOT NULL, attempt integer NOT NULL, at timestamptz NOT NULL DEFAULT now());
  CREATE INDEX chaos_effects_key_idx ON chaos_effects (key);
  CREATE TABLE chaos_keyed_effects (key text PRIMARY KEY, run_id bigint NOT NULL, attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE chaos_refusals (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL,
    at timestamptz NOT NULL DEFAULT now());
`;

export const CHAOS_QUEUE: QueueDefinition = {
  name: 'chaos',
  rateLimits: { maxDispatchesPerSecond: 500, maxConcurrentDispatches: 20 },
  // Short backoff so the run drains in minutes; attempts are not the limit (transient failures only).
  retryConfig: { maxAttempts: 1000, minBackoffSeconds: 0.5, maxBackoffSeconds: 5, maxDoublings: 3 },
};

const effectPayload = z
  .object({ n: z.number().int().nonnegative(), spawn: z.boolean().optional(), poison: z.boolean().optional() })
  .strict();

type LooseEnqueue = (task: string, payload: unknown, options?: EnqueueOptions) => Promise<unknown>;

export const chaosEffectTask = defineTask({
  name: 'chaos.effect',
  queue: 'chaos',
  payload: effectPayload,
  transactional: true,
  deadlineSeconds: 15,
  async handler(ctx) {
    if (ctx.payload.poison) throw new NonRetryableError(`chaos: poison task ${ctx.payload.n} dies on purpose`);
    await ctx.db.query('INSERT INTO chaos_effects (key, run_id, attempt) VALUES ($1, $2, $3)', [
      ctx.idempotencyKey,
      ctx.runId,
      ctx.attempt,
    ]);
    if (ctx.payload.spawn) {
      // Through the outbox, in this run's transaction: sent by the service's relay after commit.
      await (ctx.enqueue as unknown as LooseEnqueue)(
        'chaos.effect',
        { n: ctx.payload.n },
        { key: `child-${ctx.idempotencyKey}`, tx: ctx.db },
      );
    }
    return { n: ctx.payload.n };
  },
});

export const chaosKeyedEffectTask = defineTask({
  name: 'chaos.keyed_effect',
  queue: 'chaos',
  payload: effectPayload,
  deadlineSeconds: 15,
  async handler(ctx) {
    const { rows } = await ctx.db.query<{ refused: boolean }>(
      `WITH ins AS (INSERT INTO chaos_keyed_effects (key, run_id, attempt) VALUES ($1, $2, $3)
                    ON CONFLICT (key) DO NOTHING RETURNING 1),
            refusal AS (INSERT INTO chaos_refusals (key) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM ins) RETURNING 1)
       SELECT EXISTS (SELECT 1 FROM refusal) AS refused`,
      [ctx.idempotencyKey, ctx.runId, ctx.attempt],
    );
    return { n: ctx.payload.n, refused: rows[0]?.refused ?? false };
  },
});

/** Share of handler calls that fail with a retryable error (CHAOS_FAILURE_RATE, default 0.1). */
const failureRate = Number(process.env.CHAOS_FAILURE_RATE ?? '0.1');
const seed = process.env.CHAOS_SEED ?? '0';

/**
 * Whether this call fails: decided by a hash of the seed, the task, the key and the attempt, so a
 * run's failures repeat with the seed and do not depend on which process handled the call.
 */
export function injectedFailure(task: string, key: string, attempt: number): boolean {
  const digest = createHash('sha256').update(`${seed}\0${task}\0${key}\0${attempt}`).digest();
  return digest.readUInt32BE(0) / 0x1_0000_0000 < failureRate;
}

function withTransientFailures(task: AnyTask): AnyTask {
  return Object.freeze({
    ...task,
    handler: async (ctx: Parameters<AnyTask['handler']>[0]) => {
      // Never on the last attempt: a transient failure must not kill a run.
      if (!ctx.lastAttempt && injectedFailure(task.name, ctx.idempotencyKey, ctx.attempt)) {
        throw new Error(`chaos: injected transient failure (attempt ${ctx.attempt})`);
      }
      return task.handler(ctx);
    },
  });
}

export const tasks: readonly AnyTask[] = [...productionTasks, chaosEffectTask, chaosKeyedEffectTask].map(
  withTransientFailures,
);
export const queues: readonly QueueDefinition[] = [...productionQueues, CHAOS_QUEUE];
export const registry = createRegistry({ tasks, queues, schedules });

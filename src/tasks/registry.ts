// Queues, schedules and the registry that holds them with the task definitions. The one list
// itself lives in src/task-registry.ts; this module only knows their shapes and checks them.
import type { AnyTask } from './define-task.ts';

/** A Cloud Tasks queue, in Cloud Tasks' own terms; unset fields take Cloud Tasks' defaults. */
export interface QueueDefinition {
  readonly name: string;
  readonly rateLimits?: {
    /** (Default: 500, the maximum) */
    readonly maxDispatchesPerSecond?: number;
    /** (Default: 1000) */
    readonly maxConcurrentDispatches?: number;
  };
  readonly retryConfig?: {
    /** All attempts, the first included; -1 = unlimited. (Default: 100) */
    readonly maxAttempts?: number;
    /** Seconds from the first attempt; 0 = unlimited. (Default: 0) */
    readonly maxRetryDurationSeconds?: number;
    /** (Default: 0.1 s) */
    readonly minBackoffSeconds?: number;
    /** (Default: 3600 s) */
    readonly maxBackoffSeconds?: number;
    /** (Default: 16) */
    readonly maxDoublings?: number;
  };
}

/** A Cloud Scheduler job that pushes one task on a cron schedule. */
export interface ScheduleDefinition {
  /** The job id (prefixed when synced, so the service recognises the jobs it owns). */
  readonly name: string;
  readonly description: string;
  /** unix-cron, e.g. "*\/5 * * * *". */
  readonly cron: string;
  /** (Default: "UTC") */
  readonly timeZone?: string;
  readonly task: string;
  readonly payload: unknown;
  /** Cloud Scheduler retries of one run, 0–5. (Default: 0) */
  readonly retryCount?: number;
}

export const CLOUD_TASKS_DEFAULT_MAX_ATTEMPTS = 100;

export interface TaskRegistry {
  readonly tasks: ReadonlyMap<string, AnyTask>;
  readonly queues: ReadonlyMap<string, QueueDefinition>;
  readonly schedules: readonly ScheduleDefinition[];
  /** How many attempts a task gets before its last failure is final (-1: unlimited). */
  maxAttempts(task: AnyTask, scheduled: boolean): number;
}

export function createRegistry(input: {
  tasks: readonly AnyTask[];
  queues: readonly QueueDefinition[];
  schedules: readonly ScheduleDefinition[];
}): TaskRegistry {
  const queues = new Map<string, QueueDefinition>();
  for (const q of input.queues) {
    if (!/^[A-Za-z0-9-]{1,100}$/.test(q.name))
      throw new Error(`queue "${q.name}": Cloud Tasks allows [A-Za-z0-9-]{1,100}`);
    if (queues.has(q.name)) throw new Error(`queue "${q.name}" is declared twice`);
    queues.set(q.name, q);
  }
  const tasks = new Map<string, AnyTask>();
  for (const t of input.tasks) {
    if (tasks.has(t.name)) throw new Error(`task "${t.name}" is registered twice`);
    if (!queues.has(t.queue)) throw new Error(`task "${t.name}" names queue "${t.queue}", which is not declared`);
    tasks.set(t.name, t);
  }
  const scheduleNames = new Set<string>();
  for (const s of input.schedules) {
    if (scheduleNames.has(s.name)) throw new Error(`schedule "${s.name}" is declared twice`);
    scheduleNames.add(s.name);
    const task = tasks.get(s.task);
    if (!task) throw new Error(`schedule "${s.name}" names task "${s.task}", which is not registered`);
    if (!task.payload.safeParse(s.payload).success)
      throw new Error(`schedule "${s.name}": payload does not match ${s.task}`);
  }
  return {
    tasks,
    queues,
    schedules: input.schedules,
    maxAttempts(task, scheduled) {
      if (scheduled) {
        const schedule = input.schedules.find((s) => s.task === task.name);
        return (schedule?.retryCount ?? 0) + 1;
      }
      return queues.get(task.queue)?.retryConfig?.maxAttempts ?? CLOUD_TASKS_DEFAULT_MAX_ATTEMPTS;
    },
  };
}

// The one list of tasks, queues and schedules. Adding a task: one *.task.ts file and one line here.

import { generatePostTask } from './domains/blog/generate-post.task.ts';
import { holdsSweepTask } from './domains/credits/holds-sweep.task.ts';
import { longestTaskDeadlineSeconds } from './domains/credits/index.ts';
import { monthlyGrantTask } from './domains/credits/monthly-grant.task.ts';
import { topupTask } from './domains/credits/topup.task.ts';
import { healthCheckTask } from './domains/health/health-check.task.ts';
import { scrapePageTask } from './domains/scraper/scrape-page.task.ts';
import { processMessageTask } from './domains/whatsapp/process-message.task.ts';
import { sendMessageTask } from './domains/whatsapp/send-message.task.ts';
import { pruneRunsTask } from './tasks/prune-runs.task.ts';
import { createRegistry, type QueueDefinition, type ScheduleDefinition } from './tasks/registry.ts';

export const tasks = [
  healthCheckTask,
  pruneRunsTask,
  topupTask,
  monthlyGrantTask,
  processMessageTask,
  sendMessageTask,
  scrapePageTask,
  generatePostTask,
  holdsSweepTask,
] as const;

/**
 * The age at which a credits hold with no task run in progress counts as abandoned: the longest
 * dispatch deadline of the tasks above, since no attempt runs longer than its deadline.
 */
export const HOLD_SWEEP_AFTER_SECONDS = longestTaskDeadlineSeconds(tasks);

declare module './tasks/define-task.ts' {
  interface Register {
    tasks: typeof tasks;
  }
}

// Rate limits and retries per workload; Cloud Tasks' defaults where unset.
export const queues: readonly QueueDefinition[] = [
  {
    // Replies and inbound messages: fast, many retries over a few hours (Meta's pair rate limit).
    name: 'whatsapp',
    rateLimits: { maxDispatchesPerSecond: 50, maxConcurrentDispatches: 50 },
    retryConfig: { maxAttempts: 20, minBackoffSeconds: 2, maxBackoffSeconds: 600, maxDoublings: 6 },
  },
  {
    // Other people's web servers: polite rate, few retries.
    name: 'scraper',
    rateLimits: { maxDispatchesPerSecond: 5, maxConcurrentDispatches: 10 },
    retryConfig: { maxAttempts: 5, minBackoffSeconds: 10, maxBackoffSeconds: 600, maxDoublings: 3 },
  },
  {
    // LLM calls: slow and costly; bounded concurrency.
    name: 'blog',
    rateLimits: { maxDispatchesPerSecond: 2, maxConcurrentDispatches: 5 },
    retryConfig: { maxAttempts: 5, minBackoffSeconds: 30, maxBackoffSeconds: 1800, maxDoublings: 3 },
  },
  {
    // Money: never give up quickly; exactly-once is the task's job, persistence the queue's.
    name: 'credits',
    rateLimits: { maxDispatchesPerSecond: 20, maxConcurrentDispatches: 10 },
    retryConfig: { maxAttempts: 50, minBackoffSeconds: 5, maxBackoffSeconds: 3600, maxDoublings: 8 },
  },
  {
    name: 'maintenance',
    rateLimits: { maxDispatchesPerSecond: 1, maxConcurrentDispatches: 2 },
    retryConfig: { maxAttempts: 3, minBackoffSeconds: 10, maxBackoffSeconds: 60, maxDoublings: 2 },
  },
];

export const schedules: readonly ScheduleDefinition[] = [
  {
    name: 'health-check',
    description: 'Probe the database and the other dependencies; keep the history.',
    cron: '*/5 * * * *',
    timeZone: 'UTC',
    task: 'health.check',
    payload: {},
  },
  {
    name: 'prune-runs',
    description: 'Delete finished task runs older than TASK_RUN_RETENTION_DAYS.',
    cron: '30 3 * * *',
    timeZone: 'UTC',
    task: 'maintenance.prune_runs',
    payload: {},
  },
  {
    name: 'monthly-grant',
    description: 'Grant every account on a plan its monthly credits, once per account and month.',
    cron: '0 0 1 * *',
    timeZone: 'UTC',
    task: 'credits.monthly_grant',
    payload: {},
    // A run that dies halfway resumes on retry (each grant is keyed per account and month).
    retryCount: 5,
  },
  {
    name: 'sweep-holds',
    description: 'Release credits holds left by task runs that ended without settling or releasing them.',
    cron: '*/15 * * * *',
    timeZone: 'UTC',
    task: 'credits.sweep_holds',
    payload: { olderThanSeconds: HOLD_SWEEP_AFTER_SECONDS },
    // Each release is keyed by its hold: a retried run releases nothing twice.
    retryCount: 2,
  },
];

export const registry = createRegistry({ tasks, queues, schedules });

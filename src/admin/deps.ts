// What the dashboard's pages are given: the database, the clock, the registry and the task backend.
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db/db.ts';
import type { CloudClients } from '../tasks/cloud-clients.ts';
import type { EnqueueTarget, TaskEnqueuer } from '../tasks/enqueue.ts';
import type { TaskRegistry } from '../tasks/registry.ts';

/** What the task backend offers the dashboard: replay, queues and schedules. */
export interface TaskBackend {
  enqueuer: TaskEnqueuer;
  clients: CloudClients;
  target: EnqueueTarget;
}

export interface DashboardDeps {
  config: Config;
  db: Db;
  clock: Clock;
  registry: TaskRegistry;
  /** Absent when the app runs without a task backend (app.inject tests): those pages say so. */
  backend: TaskBackend | undefined;
}

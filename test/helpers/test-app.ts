// Builds the real app (buildApp) over a fresh test database, with a local token issuer standing in
// for Google's, for app.inject() tests.

import type { FastifyInstance } from 'fastify';
import type { TaskBackend } from '../../src/admin/deps.ts';
import { buildApp } from '../../src/app.ts';
import { TestClock } from '../../src/clock.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import type { LoadSignals } from '../../src/http/plugins/load-shedding.ts';
import type { Telemetry } from '../../src/observability/telemetry.ts';
import { registry as defaultRegistry } from '../../src/task-registry.ts';
import { closeTaskServices, createTaskServices } from '../../src/task-services.ts';
import type { Enqueue, EnqueueOptions, TaskServices } from '../../src/tasks/define-task.ts';
import { createPushAuthenticator } from '../../src/tasks/push-auth.ts';
import type { TaskRegistry } from '../../src/tasks/registry.ts';
import { TaskEvents } from '../../src/tasks/task-events.ts';
import { type CapturedLogs, captureLogger } from './capture-logger.ts';
import { createTestDb, type TestDb } from './test-db.ts';
import { startTestIssuer, type TestIssuer } from './test-issuer.ts';

export interface EnqueuedCall {
  task: string;
  payload: unknown;
  options: EnqueueOptions | undefined;
}

export interface TestApp {
  app: FastifyInstance;
  db: TestDb;
  config: Config;
  clock: TestClock;
  logs: CapturedLogs;
  issuer: TestIssuer;
  events: TaskEvents;
  /** What handlers enqueued (the enqueue port's real adapter is tested against the emulator). */
  enqueued: EnqueuedCall[];
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  db?: TestDb;
  registry?: TaskRegistry;
  services?: Partial<TaskServices>;
  /** The official clients and enqueuer, for the dashboard's queues and schedules (none by default). */
  backend?: TaskBackend;
  /** Injected load signals (test/integration/load-shedding.test.ts); set SHED_* in env to turn shedding on. */
  loadSignals?: Partial<LoadSignals>;
  /** Tracing and metrics (off by default): a test that reads the metrics starts a real exporter. */
  telemetry?: Telemetry;
}

export async function buildTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const config = loadConfig({
    DATABASE_URL: 'memory://',
    PUBLIC_BASE_URL: 'https://svc.example.run.app',
    // No load shedding unless a test asks for it: a busy test machine must not turn answers into 503s.
    SHED_EVENT_LOOP_LAG_MS: '0',
    SHED_DB_WAITING: '0',
    ...options.env,
  });
  const db = options.db ?? (await createTestDb());
  const logs = captureLogger();
  const clock = new TestClock('2026-03-01T12:00:00.000Z');
  const issuer = await startTestIssuer({
    audience: config.tasks.oidcAudience,
    nowSeconds: () => Math.floor(clock.now() / 1000),
  });
  const enqueued: EnqueuedCall[] = [];
  const enqueue: Enqueue = async (task, payload, opts) => {
    enqueued.push({ task, payload, options: opts });
    return { taskName: `projects/local/locations/us-central1/queues/q/tasks/t${enqueued.length}`, created: true };
  };
  const events = new TaskEvents();
  const services = { ...createTaskServices(config), ...options.services };
  const app = await buildApp({
    config,
    db,
    logger: logs.logger,
    clock,
    registry: options.registry ?? defaultRegistry,
    pushAuth: createPushAuthenticator({
      mode: config.tasks.auth,
      audience: config.tasks.oidcAudience,
      invokerEmail: config.tasks.invokerServiceAccount,
      secret: config.tasks.secret,
      issuers: [issuer.issuer],
      jwksUrl: issuer.jwksUrl,
      clock,
    }),
    enqueue,
    services,
    events,
    backend: options.backend,
    loadSignals: options.loadSignals,
    telemetry: options.telemetry,
  });
  return {
    app,
    db,
    config,
    clock,
    logs,
    issuer,
    events,
    enqueued,
    async close() {
      await app.close();
      await closeTaskServices(services);
      await issuer.close();
      await db.close();
    },
  };
}

// buildApp(deps): the Fastify app with its plugins and routes. It never listens (main.ts does),
// so tests build the real app with test adapters and call app.inject().
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { dashboardRoutes } from './admin/dashboard.ts';
import type { TaskBackend } from './admin/deps.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Db } from './db/db.ts';
import { createLoginService } from './domains/auth/index.ts';
import { registerErrorHandler } from './http/plugins/error-handler.ts';
import { type LoadSignals, loadShedding } from './http/plugins/load-shedding.ts';
import { operatorAccess } from './http/plugins/operator-access.ts';
import { CloudLoggingLogController } from './http/plugins/request-logging.ts';
import { authRoutes } from './http/routes/auth.routes.ts';
import { healthRoutes } from './http/routes/health.routes.ts';
import { postRoutes } from './http/routes/posts.routes.ts';
import { stripeWebhookRoutes } from './http/routes/stripe-webhook.routes.ts';
import { whatsappWebhookRoutes } from './http/routes/whatsapp-webhook.routes.ts';
import type { Logger } from './logger.ts';
import { tracedChildLoggers, traceRequests } from './observability/http-tracing.ts';
import { type Telemetry, telemetryOff } from './observability/telemetry.ts';
import type { Enqueue, TaskServices } from './tasks/define-task.ts';
import type { PushAuthenticator } from './tasks/push-auth.ts';
import { pushRoutes } from './tasks/push-route.ts';
import type { TaskRegistry } from './tasks/registry.ts';
import type { TaskEvents } from './tasks/task-events.ts';

export interface AppDeps {
  config: Config;
  db: Db;
  logger: Logger;
  clock: Clock;
  registry: TaskRegistry;
  pushAuth: PushAuthenticator;
  enqueue: Enqueue;
  services: TaskServices;
  events: TaskEvents;
  /** The enqueuer and the official clients, for the dashboard's replay, queues and schedules. */
  backend?: TaskBackend | undefined;
  /** Tracing and metrics. (Default: off, ids only) */
  telemetry?: Telemetry;
  /** Replaces the measured load signals (event-loop lag, connections awaited): tests. */
  loadSignals?: Partial<LoadSignals>;
}

/** The largest body any route accepts: Cloud Tasks' 1 MB task limit, with room for headers. */
export const BODY_LIMIT_BYTES = 1_048_576;

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const telemetry = deps.telemetry ?? telemetryOff;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new CloudLoggingLogController(),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: true,
    requestIdHeader: false,
    // Every request has a span (continuing its traceparent), and every line logged while serving
    // it carries that span's trace, so Cloud Logging groups them and Cloud Trace shows them.
    childLoggerFactory: tracedChildLoggers(telemetry.tracer, config.tasks.projectId),
    return503OnClosing: true,
  });
  traceRequests(app);
  registerErrorHandler(app);
  // Before every route: pushes and webhooks get a fast 503 while the instance cannot keep up.
  loadShedding(app, { db: deps.db, ...config.shedding, signals: deps.loadSignals });
  await app.register(fastifyCookie, { secret: config.sessionSecret, hook: 'onRequest' });
  app.decorateRequest('operator', null);
  healthRoutes(app, { db: deps.db });
  postRoutes(app, { db: deps.db });
  whatsappWebhookRoutes(app, {
    db: deps.db,
    clock: deps.clock,
    enqueue: deps.enqueue,
    verifyToken: config.whatsapp.verifyToken,
    appSecret: config.whatsapp.appSecret,
    metrics: telemetry.metrics,
  });
  // Without a signing secret the route does not exist (404): unsigned events are never accepted.
  if (config.stripe.webhookSecret) {
    stripeWebhookRoutes(app, {
      db: deps.db,
      clock: deps.clock,
      enqueue: deps.enqueue,
      secret: config.stripe.webhookSecret,
      secretKey: config.stripe.secretKey,
      apiBaseUrl: config.stripe.apiBaseUrl,
    });
  }
  pushRoutes(app, {
    registry: deps.registry,
    db: deps.db,
    clock: deps.clock,
    auth: deps.pushAuth,
    enqueue: deps.enqueue,
    services: deps.services,
    events: deps.events,
    telemetry,
  });
  // Operators' login (OpenID Connect) and sessions, when OAUTH_CLIENT_ID is set.
  const login = createLoginService({ config, db: deps.db, clock: deps.clock });
  if (login) await authRoutes(app, { config, login });
  // The operators' side: everything under /admin passes the access check and CSRF protection.
  await app.register(
    async (admin) => {
      await admin.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
      operatorAccess(admin, { config, login });
      dashboardRoutes(admin, {
        config,
        db: deps.db,
        clock: deps.clock,
        registry: deps.registry,
        backend: deps.backend,
      });
    },
    { prefix: '/admin' },
  );
  return app;
}

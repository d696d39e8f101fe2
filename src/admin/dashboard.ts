// The dashboard's routes under /admin, all behind the operator access check and CSRF protection
// (http/plugins/operator-access.ts). Each page module registers its own routes.
import type { FastifyInstance } from 'fastify';
import { accountsPages } from './accounts.page.ts';
import { auditPages } from './audit.page.ts';
import type { DashboardDeps } from './deps.ts';
import { healthPages } from './health.page.ts';
import { outboxPages } from './outbox.page.ts';
import { overviewPages } from './overview.page.ts';
import { postsPages } from './posts.page.ts';
import { queuesPages } from './queues.page.ts';
import { runsPages } from './runs.page.ts';
import { schedulesPages } from './schedules.page.ts';
import { whatsappPages } from './whatsapp.page.ts';

export function dashboardRoutes(scope: FastifyInstance, deps: DashboardDeps): void {
  overviewPages(scope, deps);
  runsPages(scope, deps);
  queuesPages(scope, deps);
  schedulesPages(scope, deps);
  outboxPages(scope, deps);
  healthPages(scope, deps);
  accountsPages(scope, deps);
  whatsappPages(scope, deps);
  postsPages(scope, deps);
  auditPages(scope, deps);
}

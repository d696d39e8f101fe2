// (to be written) the dashboard's outbox page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function outboxPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

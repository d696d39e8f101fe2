// (to be written) the dashboard's overview page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function overviewPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

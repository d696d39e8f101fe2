// (to be written) the dashboard's schedules page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function schedulesPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

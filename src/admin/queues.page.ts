// (to be written) the dashboard's queues page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function queuesPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

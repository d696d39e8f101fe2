// (to be written) the dashboard's audit page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function auditPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

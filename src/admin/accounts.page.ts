// (to be written) the dashboard's accounts page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function accountsPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

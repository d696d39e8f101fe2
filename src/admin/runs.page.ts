// (to be written) the dashboard's runs page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function runsPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

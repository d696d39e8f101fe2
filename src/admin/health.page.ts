// (to be written) the dashboard's health page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function healthPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

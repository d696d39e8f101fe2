// (to be written) the dashboard's posts page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function postsPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

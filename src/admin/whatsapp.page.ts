// (to be written) the dashboard's whatsapp page.
import type { FastifyInstance } from 'fastify';
import type { DashboardDeps } from './deps.ts';

export function whatsappPages(_scope: FastifyInstance, _deps: DashboardDeps): void {}

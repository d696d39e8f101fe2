// The health domain's public surface: everything outside src/domains/health imports from here,
// except the task definitions (*.task.ts), which only src/task-registry.ts reads.
export type { ProbeResult } from './health.repository.ts';
export type { HealthProbe } from './health.service.ts';

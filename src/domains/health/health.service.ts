// Probes each dependency with its latency and decides the service's health.
import type { Queryable } from '../../db/db.ts';
import type { HealthStatus, ProbeResult } from './health.repository.ts';

/** One dependency to check. `critical`: its failure means down, not degraded. */
export interface HealthProbe {
  name: string;
  critical: boolean;
  check(signal: AbortSignal): Promise<void>;
}

export function databaseProbe(db: Queryable): HealthProbe {
  return {
    name: 'database',
    critical: true,
    async check() {
      await db.query('SELECT 1');
    },
  };
}

export async function runProbes(
  probes: readonly HealthProbe[],
  signal: AbortSignal,
  now: () => number = performance.now.bind(performance),
): Promise<{ status: HealthStatus; checks: ProbeResult[] }> {
  const checks = await Promise.all(
    probes.map(async (probe) => {
      const started = now();
      try {
        await probe.check(signal);
        return { name: probe.name, ok: true, latencyMs: round(now() - started), error: null, critical: probe.critical };
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        return { name: probe.name, ok: false, latencyMs: round(now() - started), error, critical: probe.critical };
      }
    }),
  );
  const status: HealthStatus = checks.some((c) => !c.ok && c.critical)
    ? 'down'
    : checks.some((c) => !c.ok)
      ? 'degraded'
      : 'ok';
  return { status, checks: checks.map(({ critical: _, ...c }) => c) };
}

const round = (ms: number) => Math.round(ms * 100) / 100;

// health_checks: one row per health-check run, keyed by the run (the Cloud Scheduler schedule time).
import type { Queryable } from '../../db/db.ts';

export type HealthStatus = 'ok' | 'degraded' | 'down';

export interface ProbeResult {
  name: string;
  ok: boolean;
  latencyMs: number;
  error: string | null;
}

export interface HealthCheckRow {
  id: number;
  runKey: string;
  status: HealthStatus;
  checks: ProbeResult[];
  checkedAt: Date;
}

const RECORD_CHECK = `
  INSERT INTO health_checks (run_key, status, checks, checked_at) VALUES ($1, $2, $3, $4)
  ON CONFLICT (run_key) DO NOTHING
  RETURNING id`;

// The status before this run, to log a change of state once.
const PREVIOUS_STATUS = `
  SELECT status FROM health_checks WHERE checked_at < $1 ORDER BY checked_at DESC, id DESC LIMIT 1`;

export const healthChecks = {
  /** Records a run; undefined when this run key was recorded already (a duplicate delivery). */
  async recordCheck(
    q: Queryable,
    input: { runKey: string; status: HealthStatus; checks: ProbeResult[]; checkedAt: Date },
  ): Promise<number | undefined> {
    const r = await q.query<{ id: number }>(RECORD_CHECK, [
      input.runKey,
      input.status,
      JSON.stringify(input.checks),
      input.checkedAt,
    ]);
    return r.rows[0]?.id;
  },

  async previousStatus(q: Queryable, before: Date): Promise<HealthStatus | undefined> {
    return (await q.query<{ status: HealthStatus }>(PREVIOUS_STATUS, [before])).rows[0]?.status;
  },

  async recentChecks(q: Queryable, limit = 50): Promise<HealthCheckRow[]> {
    const r = await q.query<{
      id: number;
      run_key: string;
      status: HealthStatus;
      checks: ProbeResult[];
      checked_at: Date;
    }>('SELECT id, run_key, status, checks, checked_at FROM health_checks ORDER BY checked_at DESC, id DESC LIMIT $1', [
      limit,
    ]);
    return r.rows.map((x) => ({
      id: x.id,
      runKey: x.run_key,
      status: x.status,
      checks: x.checks,
      checkedAt: x.checked_at,
    }));
  },
};

-- 0011: indexes for the dashboard's queries (src/admin/runs.queries.ts). task_runs already serves
-- its newest-first lists by updated_at, by status and by task (0002, 0004). Each index here costs
-- every insert and update of a run one more index entry (updates of task_runs are never HOT, since
-- updated_at is indexed), so each is narrow or partial.

-- Charts over time windows: runs finished in the last hour or day, with what the aggregates read,
-- so that the overview scans only the window's index entries.
CREATE INDEX task_runs_finished_at_idx ON task_runs (finished_at) INCLUDE (task, status, started_at)
  WHERE finished_at IS NOT NULL;

-- Search by idempotency key, exact or by prefix (LIKE 'prefix%'), whatever the database's collation.
CREATE INDEX task_runs_key_prefix_idx ON task_runs (idempotency_key text_pattern_ops);

-- Running runs, newest first. The predicate names the lease on purpose: no statement of the push
-- path states it, so none can be planned on this small index (the trap 0004 removed: a fenced
-- finish `WHERE id = $1 AND status = 'running'` scanning every running run instead of one row).
CREATE INDEX task_runs_running_idx ON task_runs (updated_at DESC)
  WHERE status = 'running' AND lease_expires_at IS NOT NULL;

-- Failed and dead runs of one task, newest first, and how many (the operator's usual question:
-- what failed in task X, and replay it). Partial: failures are a few per cent of the runs, and the
-- status index alone walks every failure of the other tasks to find this one's.
CREATE INDEX task_runs_task_failures_idx ON task_runs (task, status, updated_at DESC)
  WHERE status IN ('failed', 'dead');

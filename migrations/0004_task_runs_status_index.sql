-- 0004: the status index leaves out running runs. With running rows rare in the statistics, the
-- planner used (status, updated_at) for the fenced finish (`WHERE id = $1 … AND status = 'running'`)
-- and visited every run in progress instead of one primary-key row (bench/results/push-path.md).
-- Listing runs by a finished status still uses it; running runs are listed through updated_at.

DROP INDEX task_runs_status_updated_at_idx;
CREATE INDEX task_runs_status_updated_at_idx ON task_runs (status, updated_at DESC) WHERE status <> 'running';

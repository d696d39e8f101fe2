-- 0016: fewer index writes per run on the push path. No update of task_runs can be HOT (every one
-- changes status and updated_at, which the dashboard's lists are indexed on), so every claim and
-- every completion writes an entry into each index whose predicate the new row version matches.
-- The (status, updated_at) index of 0004 held every finished run: a succeeded completion, the
-- commonest write of the table, paid for an entry that only the lists of failed and dead runs and
-- the count of dead runs read. It now holds failed and dead runs only. Listing succeeded runs
-- walks the updated_at index instead, where nearly every entry is a succeeded run; pruning walks
-- updated_at too. Running runs stay outside it, so the fenced finish (`status = 'running'`) can
-- never be planned on it.

DROP INDEX task_runs_status_updated_at_idx;
CREATE INDEX task_runs_status_updated_at_idx ON task_runs (status, updated_at DESC) WHERE status IN ('failed', 'dead');

-- The unique (task, key) and the key-prefix index of 0011 both carried every key: one index,
-- key first with text_pattern_ops, serves the claim's conflict arbiter (ON CONFLICT (task,
-- idempotency_key) infers it whatever the column order, and text_pattern_ops compares equal
-- exactly as text does), the lookups by (task, key), and the dashboard's search by key prefix.
-- One index entry less for every claim and every completion. The new index is built before the
-- old ones go, so uniqueness holds throughout; building it blocks writes to task_runs for as long
-- as it takes (seconds per million runs).
CREATE UNIQUE INDEX task_runs_key_task_unique ON task_runs (idempotency_key text_pattern_ops, task);
ALTER TABLE task_runs DROP CONSTRAINT task_runs_task_key_unique;
DROP INDEX task_runs_key_prefix_idx;
ALTER INDEX task_runs_key_task_unique RENAME TO task_runs_task_key_unique;

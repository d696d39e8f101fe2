-- 0017: the push path's completion becomes a HOT update, and attempt history an append-only table.
--
-- A HOT update (heap-only tuple) writes no index entry: PostgreSQL makes one when no column that any
-- index names (key, INCLUDE, expression or partial predicate) changes value and the page has room.
-- The common path is a claim (an INSERT: every index gets an entry anyway) then a succeeded
-- completion, an UPDATE that changes status, finished_at, lease_expires_at, updated_at and result.
-- Until now an index named each of those (status, updated_at, finished_at, the running index's
-- lease), so every completion wrote a new entry into all five indexes whose predicate it matched and
-- copied the attempt-history JSON. After this migration no index of task_runs names a column that a
-- first-attempt success changes:
--
-- - the lists order by when the latest attempt started, coalesce(started_at, created_at) (set by the
--   claim, never by a completion), instead of updated_at;
-- - failed and dead runs are found through a partial index on `last_error IS NOT NULL`: a failure
--   always records its error and a success clears it, so a first attempt that succeeds leaves it
--   NULL (unchanged, HOT) while a run that failed enters the index;
-- - running runs have no index of their own any more (any index that tells a running run from a
--   succeeded one must change when it succeeds): the running list walks the newest runs;
-- - the overview's charts read task_attempts, one row per finished attempt, instead of
--   finished_at on task_runs.
--
-- What still is not HOT, by necessity: a claim that re-claims a failed run or takes over a lease
-- (its latest-attempt time moves), a completion after a failure (it clears last_error), and any
-- update that finds no room on its page. A fillfactor of 50 leaves that room: a completion follows
-- its claim within milliseconds, on the page the claim just filled, and a group-committed completion
-- updates every run of a page in one statement, before any old version can be pruned, so each row
-- needs room for its new version beside it (measured, 200 runs completed half alone and half in one
-- batch: 155 HOT at fillfactor 70, 200 at 50). Inserts fill pages half; the versions a completion
-- leaves behind are pruned on the page as it is next read.


ALTER TABLE task_runs SET (fillfactor = 50);

-- Per attempt, appended when the attempt finishes (a row is never updated): what the run's
-- attempt_history array held, without rewriting a growing array on every attempt.
CREATE TABLE task_attempts (
  run_id bigint NOT NULL,
  attempt integer NOT NULL,
  task text NOT NULL,
  status text NOT NULL CHECK (status IN ('succeeded', 'failed', 'dead')),
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  duration_ms double precision NOT NULL,
  error text,
  retry_count integer,
  PRIMARY KEY (run_id, attempt)
);
-- The overview's charts: attempts finished in a window, with what the aggregates read.
CREATE INDEX task_attempts_finished_at_idx ON task_attempts (finished_at) INCLUDE (task, status, started_at);

-- The existing histories, one row per entry (entries written by this code always carry every field;
-- the run's own times stand in for any that an older or hand-written entry lacks).
INSERT INTO task_attempts (run_id, attempt, task, status, started_at, finished_at, duration_ms, error, retry_count)
SELECT r.id, (e.value ->> 'attempt')::int, r.task, e.value ->> 'status',
       coalesce((e.value ->> 'startedAt')::timestamptz, r.started_at, r.created_at),
       coalesce((e.value ->> 'finishedAt')::timestamptz, r.finished_at, r.updated_at),
       coalesce((e.value ->> 'durationMs')::float8,
                extract(epoch FROM coalesce(r.finished_at, r.updated_at) - coalesce(r.started_at, r.created_at)) * 1000),
       e.value ->> 'error', (e.value ->> 'retryCount')::int
  FROM task_runs r CROSS JOIN LATERAL jsonb_array_elements(r.attempt_history) AS e(value)
 WHERE jsonb_typeof(r.attempt_history) = 'array'
   AND e.value ->> 'status' IN ('succeeded', 'failed', 'dead')
   AND (e.value ->> 'attempt') ~ '^[0-9]{1,9}$'
ON CONFLICT (run_id, attempt) DO NOTHING;

ALTER TABLE task_runs DROP COLUMN attempt_history;

-- A failed or dead run always has an error from now on (the repository writes one); older rows
-- without one get an empty text, so that the failures index below holds every failed and dead run.
UPDATE task_runs SET last_error = '' WHERE status IN ('failed', 'dead') AND last_error IS NULL;

DROP INDEX task_runs_updated_at_idx;
DROP INDEX task_runs_task_updated_at_idx;
DROP INDEX task_runs_status_updated_at_idx;
DROP INDEX task_runs_task_failures_idx;
DROP INDEX task_runs_running_idx;
DROP INDEX task_runs_finished_at_idx;

-- Newest first (by the latest attempt's start), for every list and the prune; by task.
CREATE INDEX task_runs_activity_idx ON task_runs ((coalesce(started_at, created_at)) DESC);
CREATE INDEX task_runs_task_activity_idx ON task_runs (task, (coalesce(started_at, created_at)) DESC);
-- Runs that failed or died (and retries of failed runs), newest first: a few per cent of the runs.
CREATE INDEX task_runs_failures_idx ON task_runs ((coalesce(started_at, created_at)) DESC)
  WHERE last_error IS NOT NULL;

-- 0002: task_runs, the run state of every pushed task: idempotency, leases, outcomes, dead letters.
-- One row per (task, idempotency key), whatever the number of deliveries. `attempts` is the
-- fencing token: a statement that completes a run names the attempt it belongs to, so a stale
-- delivery whose lease was taken over changes nothing.

CREATE TABLE task_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task text NOT NULL,
  idempotency_key text NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'dead')),
  attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 0),
  lease_expires_at timestamptz,
  -- The payload as first received (null when the body was not JSON) and its SHA-256, so a key
  -- reused with another payload is recognised.
  payload jsonb,
  payload_hash text NOT NULL,
  result jsonb,
  last_error text,
  -- The Cloud Tasks task id (or Cloud Scheduler job id) and queue of the latest delivery.
  cloud_task_name text,
  queue_name text,
  -- X-CloudTasks-* / X-CloudScheduler-* headers of the latest delivery.
  delivery jsonb NOT NULL DEFAULT '{}',
  -- One entry per finished attempt: {attempt, status, startedAt, finishedAt, durationMs, error, retryCount}.
  attempt_history jsonb NOT NULL DEFAULT '[]',
  replays integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL,
  CONSTRAINT task_runs_task_key_unique UNIQUE (task, idempotency_key)
);

-- The dashboard and `runs list`: newest first, optionally by status or task.
CREATE INDEX task_runs_updated_at_idx ON task_runs (updated_at DESC);
CREATE INDEX task_runs_status_updated_at_idx ON task_runs (status, updated_at DESC);
CREATE INDEX task_runs_task_updated_at_idx ON task_runs (task, updated_at DESC);

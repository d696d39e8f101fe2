-- 0001: the first table: the history of health checks (SPEC §8 "Health"), one row per scheduled run.

CREATE TABLE health_checks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The Cloud Scheduler schedule time (or the enqueue time of a manual run): one row per run.
  run_key text NOT NULL UNIQUE,
  status text NOT NULL CHECK (status IN ('ok', 'degraded', 'down')),
  -- One entry per dependency: {"name": "database", "ok": true, "latencyMs": 1.2, "error": null}
  checks jsonb NOT NULL,
  checked_at timestamptz NOT NULL
);

CREATE INDEX health_checks_checked_at_idx ON health_checks (checked_at DESC);

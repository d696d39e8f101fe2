-- 0003: the transactional outbox. enqueue(…, { tx }) writes here in the caller's transaction; the
-- relay sends rows to Cloud Tasks after commit (and the sweeper whatever a crash left behind),
-- oldest first, and deletes what was sent. The Cloud Tasks task id is fixed when the row is
-- written, so sending a row twice is answered ALREADY_EXISTS and creates nothing twice.

CREATE TABLE task_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task text NOT NULL,
  queue text NOT NULL,
  task_id text NOT NULL UNIQUE,
  idempotency_key text NOT NULL,
  payload jsonb NOT NULL,
  schedule_time timestamptz,
  deadline_seconds integer NOT NULL,
  created_at timestamptz NOT NULL,
  send_attempts integer NOT NULL DEFAULT 0,
  last_error text
);

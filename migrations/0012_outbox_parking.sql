-- 0012: poison outbox rows. A row whose createTask keeps failing waits longer after each failure
-- (next_attempt_at: exponential, capped) instead of being retried on every pass, and after a
-- bounded number of attempts (or at once, for an error that no retry can fix) it is parked:
-- parked_at is set, last_error keeps why, and the relay no longer picks it. An operator lists,
-- re-sends or drops parked rows with `backend outbox list|resend|drop`.
-- NULL next_attempt_at means "due now" (every row written before this migration, and new rows).

ALTER TABLE task_outbox ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE task_outbox ADD COLUMN parked_at timestamptz;

-- Only parked rows are in it (a handful, until an operator acts), so writing an ordinary row
-- costs nothing more; `outbox list --parked` and the dashboard's count read it.
CREATE INDEX task_outbox_parked_idx ON task_outbox (id) WHERE parked_at IS NOT NULL;

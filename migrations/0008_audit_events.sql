-- 0008: the audit trail of the operators' side. One row per operator action (login, logout,
-- replay, purge, pause, resume, run now, credit adjustment): who, when, what, on what. Rows are
-- only ever appended; the dashboard lists them newest first.

CREATE TABLE audit_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL,
  -- The operator's e-mail, or 'loopback' when the dashboard was open to the local machine.
  actor text NOT NULL,
  action text NOT NULL,
  -- What the action was on: a run id, a queue or job name, an account id.
  target text,
  detail jsonb NOT NULL DEFAULT '{}'
);

-- Newest first, with keyset pagination on (at, id).
CREATE INDEX audit_events_at_idx ON audit_events (at DESC, id DESC);

-- 0010: operators' login (OpenID Connect) and their sessions. Nothing is kept in memory, so a
-- login may start on one instance and finish on another. Secrets that are only ever compared are
-- stored as SHA-256 hashes, so reading these tables gives nobody a usable login or session.

-- One row per login in flight, from GET /auth/login to its callback: consumed once (DELETE …
-- RETURNING), valid for 10 minutes, and only for the browser that started it.
CREATE TABLE operator_login_states (
  -- SHA-256 of the `state` parameter sent to the provider and echoed back on the callback.
  state_hash bytea PRIMARY KEY,
  -- SHA-256 of the login cookie of the browser that started the login.
  browser_hash bytea NOT NULL,
  -- Sent to the token endpoint (PKCE) and compared with the ID token: needed in clear.
  code_verifier text NOT NULL,
  nonce text NOT NULL,
  -- Where to go once logged in: a path under /admin.
  return_to text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);

CREATE INDEX operator_login_states_expires_at_idx ON operator_login_states (expires_at);

-- One row per logged-in browser. The cookie holds a random token; the row is found by its hash.
CREATE TABLE operator_sessions (
  token_hash bytea PRIMARY KEY,
  -- The verified e-mail, lower-cased, as allowed by ADMIN_EMAILS.
  email text NOT NULL,
  created_at timestamptz NOT NULL,
  -- Moved forward at most once a minute; the session ends after an idle hour.
  last_seen_at timestamptz NOT NULL,
  -- The absolute end, whatever the activity.
  expires_at timestamptz NOT NULL
);

CREATE INDEX operator_sessions_expires_at_idx ON operator_sessions (expires_at);

-- 0005: credits. Accounts (created by the WhatsApp domain on first contact) carry their cached
-- balance; credit_ledger is the append-only history whose sum the balance always equals. Every
-- ledger write locks the account row first, inserts with ON CONFLICT (idempotency_key) DO NOTHING
-- and moves the balance only when the row was inserted, in one transaction (credits.repository.ts).

CREATE TABLE accounts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- A plan name and the credits it grants on the 1st of each month; NULL plan: no monthly grant.
  plan text,
  monthly_credits integer NOT NULL DEFAULT 0 CHECK (monthly_credits >= 0),
  balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_ledger (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  amount bigint NOT NULL CHECK (amount <> 0),
  kind text NOT NULL CHECK (kind IN ('signup_grant', 'monthly_grant', 'topup', 'charge', 'refund', 'adjustment')),
  idempotency_key text NOT NULL UNIQUE,
  -- Where the movement came from: a Stripe pi_/cs_ id, a request id, an operator's reason.
  source_ref text,
  balance_after bigint NOT NULL CHECK (balance_after >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX credit_ledger_account_idx ON credit_ledger (account_id, id);

-- A charge in two steps around slow work: reserve (debit now), then settle (keep it, refunding
-- what was not used) or release (refund it all). The state makes settle and release exclusive.
CREATE TABLE credit_holds (
  ref text PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  amount bigint NOT NULL CHECK (amount > 0),
  state text NOT NULL CHECK (state IN ('held', 'settled', 'released')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Stripe webhook events seen, by event id: a redelivered event changes nothing.
CREATE TABLE stripe_events (
  event_id text PRIMARY KEY,
  type text NOT NULL,
  livemode boolean NOT NULL,
  received_at timestamptz NOT NULL,
  processed_at timestamptz
);

-- Paid sessions the service could not credit (no known account, no credits in the metadata):
-- acknowledged to Stripe and kept here for an operator.
CREATE TABLE stripe_unmatched_payments (
  event_id text PRIMARY KEY,
  object_id text NOT NULL,
  client_reference_id text,
  reason text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL
);

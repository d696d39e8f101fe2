-- 0014: money that goes back to the customer. A top-up bought with a Stripe payment is taken back
-- when Stripe refunds the payment or a cardholder disputes it, in proportion to the money that
-- went back, never below a zero balance (what could not be taken is recorded as a shortfall for an
-- operator), and given back when the bank decides a dispute for us.

-- New ledger kinds. 'refund' already means credits given back to the user (a released or partly
-- used hold); these move the other way, or undo such a move:
--   refund_clawback   credits taken back for money Stripe refunded (negative)
--   dispute_clawback  credits taken back when a cardholder disputed the payment (negative)
--   dispute_reversal  the dispute's credits given back when it closed won (positive)
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check CHECK (
  kind IN (
    'signup_grant', 'monthly_grant', 'topup', 'charge', 'refund', 'adjustment',
    'refund_clawback', 'dispute_clawback', 'dispute_reversal'
  )
);

-- Each payment the webhook credited (or enqueued the crediting of): how a later refund or dispute,
-- which names only the charge's payment intent, finds the account, the credits bought and the
-- amount paid. payment_key is the top-up's ledger key (stripe:pi:… or stripe:cs:…).
CREATE TABLE stripe_payments (
  payment_key text PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  payment_intent_id text UNIQUE,
  checkout_session_id text,
  credits bigint NOT NULL CHECK (credits > 0),
  -- In the currency's smallest unit (cents); 0 for a session a promotion code made free.
  amount bigint NOT NULL CHECK (amount >= 0),
  currency text,
  livemode boolean NOT NULL,
  created_at timestamptz NOT NULL
);

-- One row per refund state and per dispute step, the claim that makes each happen once: a
-- charge.refunded is keyed by the charge and its cumulative amount_refunded (so the same refund
-- redelivered, or told again by another event, is one row), a dispute by its id. credits_due is
-- what the rule asked for, credits_moved what the balance allowed (the ledger entry's amount, 0
-- when nothing could be taken), shortfall the difference: an operator's to chase.
CREATE TABLE stripe_clawbacks (
  ref text PRIMARY KEY,
  payment_key text NOT NULL REFERENCES stripe_payments (payment_key),
  kind text NOT NULL CHECK (kind IN ('refund', 'dispute', 'dispute_won')),
  money bigint NOT NULL CHECK (money >= 0),
  credits_due bigint NOT NULL CHECK (credits_due >= 0),
  credits_moved bigint NOT NULL CHECK (credits_moved >= 0),
  shortfall bigint NOT NULL CHECK (shortfall >= 0),
  event_id text NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE INDEX stripe_clawbacks_payment_idx ON stripe_clawbacks (payment_key);
CREATE INDEX stripe_clawbacks_shortfall_idx ON stripe_clawbacks (created_at) WHERE shortfall > 0;

// The credits SQL, one named statement each. Every movement follows one pattern: lock the account
// row, insert the ledger row ON CONFLICT DO NOTHING, and move the cached balance only when that
// insert returned a row, all in the caller's transaction.

/** Creates an account (the WhatsApp domain calls this on first contact). */
export const INSERT_ACCOUNT = `
  INSERT INTO accounts (plan, monthly_credits, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id`;

/** Locks the account row: every ledger write for one account is serialised here. */
export const LOCK_ACCOUNT = 'SELECT id, balance FROM accounts WHERE id = $1 FOR UPDATE';

/** Reads a balance without locking (balanceOf). */
export const SELECT_BALANCE = 'SELECT balance FROM accounts WHERE id = $1';

/** Appends one movement; no row back means the key was already used (a duplicate). */
export const INSERT_LEDGER_ENTRY = `
  INSERT INTO credit_ledger (account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id`;

/** Moves the cached balance; only ever run after INSERT_LEDGER_ENTRY returned a row. */
export const UPDATE_BALANCE = 'UPDATE accounts SET balance = balance + $2, updated_at = $3 WHERE id = $1';

/** The entry a key already names (to answer a duplicate, or refuse a key reused for another account). */
export const SELECT_ENTRY_BY_KEY = `
  SELECT id, account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at
    FROM credit_ledger WHERE idempotency_key = $1`;

/** An account's movements, newest first. */
export const SELECT_HISTORY = `
  SELECT id, account_id, amount, kind, idempotency_key, source_ref, balance_after, created_at
    FROM credit_ledger WHERE account_id = $1 ORDER BY id DESC LIMIT $2`;

/** Opens a hold (reserve); no row back means this ref was reserved before. */
export const INSERT_HOLD = `
  INSERT INTO credit_holds (ref, account_id, amount, state, created_at, updated_at)
  VALUES ($1, $2, $3, 'held', $4, $4)
  ON CONFLICT (ref) DO NOTHING
  RETURNING ref`;

/** The account a hold belongs to (read before locking that account). */
export const SELECT_HOLD = 'SELECT ref, account_id, amount, state FROM credit_holds WHERE ref = $1';

/** Closes a held hold as settled or released; no row back means it was already closed. */
export const CLOSE_HOLD = `
  UPDATE credit_holds SET state = $2, updated_at = $3 WHERE ref = $1 AND state = 'held' RETURNING amount`;

/** One batch of accounts on a plan, in id order after a cursor (monthly grant). */
export const SELECT_PLAN_ACCOUNTS = `
  SELECT id, plan, monthly_credits FROM accounts
   WHERE plan IS NOT NULL AND monthly_credits > 0 AND id > $1
   ORDER BY id LIMIT $2`;

/** Records a Stripe event id; no row back means it was seen before. */
export const INSERT_STRIPE_EVENT = `
  INSERT INTO stripe_events (event_id, type, livemode, received_at) VALUES ($1, $2, $3, $4)
  ON CONFLICT (event_id) DO NOTHING
  RETURNING event_id`;

/** Marks a Stripe event handled (in the transaction that recorded it). */
export const MARK_STRIPE_EVENT_PROCESSED = 'UPDATE stripe_events SET processed_at = $2 WHERE event_id = $1';

/** Keeps a paid session the service could not credit, for an operator. */
export const INSERT_UNMATCHED_PAYMENT = `
  INSERT INTO stripe_unmatched_payments (event_id, object_id, client_reference_id, reason, payload, created_at)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (event_id) DO NOTHING`;

/** Records a payment the webhook credits (or enqueued the crediting of); a known one is left as it is. */
export const INSERT_STRIPE_PAYMENT = `
  INSERT INTO stripe_payments (payment_key, account_id, payment_intent_id, checkout_session_id, credits, amount,
                               currency, livemode, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT DO NOTHING`;

/** The credited payment a charge or a dispute names through its payment intent. */
export const SELECT_STRIPE_PAYMENT_BY_INTENT = `
  SELECT payment_key, account_id, credits, amount, currency FROM stripe_payments WHERE payment_intent_id = $1`;

/** One refund state or dispute step, if claimed before. */
export const SELECT_CLAWBACK = 'SELECT ref, credits_due, credits_moved, shortfall FROM stripe_clawbacks WHERE ref = $1';

/** What a payment's refunds, disputes and won disputes asked for so far, by kind. */
export const SUM_CLAWBACKS_BY_KIND = `
  SELECT kind, COALESCE(SUM(credits_due), 0) AS due FROM stripe_clawbacks WHERE payment_key = $1 GROUP BY kind`;

/** Claims a refund state or dispute step; no row back means it was claimed before. */
export const INSERT_CLAWBACK = `
  INSERT INTO stripe_clawbacks (ref, payment_key, kind, money, credits_due, credits_moved, shortfall, event_id, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT (ref) DO NOTHING
  RETURNING ref`;

/** A won dispute owes nothing: its shortfall is no longer an operator's to chase. */
export const CLEAR_CLAWBACK_SHORTFALL = 'UPDATE stripe_clawbacks SET shortfall = 0 WHERE ref = $1';

/** Whether a Stripe event id was recorded (to skip Stripe API reads for a redelivered event). */
export const SELECT_STRIPE_EVENT = 'SELECT 1 FROM stripe_events WHERE event_id = $1';

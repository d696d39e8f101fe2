// operator_login_states: the logins in flight (state, nonce, PKCE verifier), each consumed once,
// within its lifetime, and only by the browser that started it.
import type { Queryable } from '../../db/db.ts';

export interface NewLoginState {
  stateHash: Buffer;
  browserHash: Buffer;
  codeVerifier: string;
  nonce: string;
  returnTo: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface ConsumedLoginState {
  codeVerifier: string;
  nonce: string;
  returnTo: string;
}

const INSERT = `
  INSERT INTO operator_login_states (state_hash, browser_hash, code_verifier, nonce, return_to, created_at, expires_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7)`;

// One statement decides and consumes: two callbacks racing with the same state cannot both get
// the row. A callback from another browser, or after the expiry, matches nothing and leaves the
// row to its rightful browser (or to the clean-up).
const CONSUME = `
  DELETE FROM operator_login_states
  WHERE state_hash = $1 AND browser_hash = $2 AND expires_at > $3
  RETURNING code_verifier, nonce, return_to`;

const DELETE_EXPIRED = 'DELETE FROM operator_login_states WHERE expires_at <= $1';

export const loginStates = {
  async insert(q: Queryable, s: NewLoginState): Promise<void> {
    await q.query(INSERT, [s.stateHash, s.browserHash, s.codeVerifier, s.nonce, s.returnTo, s.createdAt, s.expiresAt]);
  },

  /** The login's secrets, deleted in the same statement; null when unknown, used, expired or another browser's. */
  async consume(
    q: Queryable,
    key: { stateHash: Buffer; browserHash: Buffer; now: Date },
  ): Promise<ConsumedLoginState | null> {
    const r = await q.query<{ code_verifier: string; nonce: string; return_to: string }>(CONSUME, [
      key.stateHash,
      key.browserHash,
      key.now,
    ]);
    const row = r.rows[0];
    return row ? { codeVerifier: row.code_verifier, nonce: row.nonce, returnTo: row.return_to } : null;
  },

  async deleteExpired(q: Queryable, now: Date): Promise<number> {
    return (await q.query(DELETE_EXPIRED, [now])).rowCount;
  },
};

// operator_sessions: one row per logged-in browser, found by the SHA-256 of its cookie's token,
// with an absolute expiry and an idle one (last_seen_at, moved at most once a minute).
import type { Queryable } from '../../db/db.ts';

export interface LiveSession {
  email: string;
  lastSeenAt: Date;
}

const INSERT = `
  INSERT INTO operator_sessions (token_hash, email, created_at, last_seen_at, expires_at)
  VALUES ($1, $2, $3, $3, $4)`;

const FIND = `
  SELECT email, last_seen_at FROM operator_sessions
  WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3`;

// Only when the stored time is old enough: most requests read and do not write.
const TOUCH = `
  UPDATE operator_sessions SET last_seen_at = $2
  WHERE token_hash = $1 AND last_seen_at < $3`;

const DELETE = 'DELETE FROM operator_sessions WHERE token_hash = $1 RETURNING email';

const DELETE_ENDED = 'DELETE FROM operator_sessions WHERE expires_at <= $1 OR last_seen_at <= $2';

export const operatorSessions = {
  async insert(q: Queryable, s: { tokenHash: Buffer; email: string; now: Date; expiresAt: Date }): Promise<void> {
    await q.query(INSERT, [s.tokenHash, s.email, s.now, s.expiresAt]);
  },

  /** The session if it has neither passed its absolute expiry nor been idle since `idleSince`. */
  async findLive(q: Queryable, key: { tokenHash: Buffer; now: Date; idleSince: Date }): Promise<LiveSession | null> {
    const r = await q.query<{ email: string; last_seen_at: Date }>(FIND, [key.tokenHash, key.now, key.idleSince]);
    const row = r.rows[0];
    return row ? { email: row.email, lastSeenAt: new Date(row.last_seen_at) } : null;
  },

  async touch(q: Queryable, s: { tokenHash: Buffer; now: Date; staleBefore: Date }): Promise<void> {
    await q.query(TOUCH, [s.tokenHash, s.now, s.staleBefore]);
  },

  /** Ends the session; its e-mail, or null when there was none. */
  async delete(q: Queryable, tokenHash: Buffer): Promise<string | null> {
    const r = await q.query<{ email: string }>(DELETE, [tokenHash]);
    return r.rows[0]?.email ?? null;
  },

  async deleteEnded(q: Queryable, ended: { now: Date; idleSince: Date }): Promise<number> {
    return (await q.query(DELETE_ENDED, [ended.now, ended.idleSince])).rowCount;
  },
};

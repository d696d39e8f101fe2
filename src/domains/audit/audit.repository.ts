// audit_events: the append-only trail of what operators did (login, logout, replay, purge, pause,
// resume, run now, credit adjustment), with who, when and on what.
import type { Queryable } from '../../db/db.ts';

export type AuditAction =
  | 'login'
  | 'logout'
  | 'login.refused'
  | 'run.replay'
  | 'runs.replay_matching'
  | 'queue.pause'
  | 'queue.resume'
  | 'queue.purge'
  | 'schedule.pause'
  | 'schedule.resume'
  | 'schedule.run_now'
  | 'credits.adjust'
  | 'outbox.resend'
  | 'outbox.drop';

export interface AuditEvent {
  id: number;
  at: Date;
  actor: string;
  action: AuditAction;
  target: string | null;
  detail: Record<string, unknown>;
}

export interface AuditInput {
  at: Date;
  actor: string;
  action: AuditAction;
  target?: string | null;
  detail?: Record<string, unknown>;
}

const APPEND = `
  INSERT INTO audit_events (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)
  RETURNING id`;

// Newest first; the cursor is the (at, id) of the last row of the previous page.
const LIST = `
  SELECT id, at, actor, action, target, detail FROM audit_events
  WHERE ($1::timestamptz IS NULL OR (at, id) < ($1::timestamptz, $2::bigint))
  ORDER BY at DESC, id DESC LIMIT $3`;

export const auditEvents = {
  /** Appends one event; in the action's own transaction when given one, so both happen or neither. */
  async append(q: Queryable, e: AuditInput): Promise<number> {
    const r = await q.query<{ id: string | number }>(APPEND, [
      e.at,
      e.actor,
      e.action,
      e.target ?? null,
      JSON.stringify(e.detail ?? {}),
    ]);
    return Number(r.rows[0]!.id);
  },

  async list(
    q: Queryable,
    page: { before?: { at: Date; id: number } | undefined; limit: number },
  ): Promise<AuditEvent[]> {
    const r = await q.query<{
      id: string | number;
      at: Date;
      actor: string;
      action: AuditAction;
      target: string | null;
      detail: Record<string, unknown>;
    }>(LIST, [page.before?.at ?? null, page.before?.id ?? null, page.limit]);
    return r.rows.map((row) => ({ ...row, id: Number(row.id), at: new Date(row.at) }));
  },
};

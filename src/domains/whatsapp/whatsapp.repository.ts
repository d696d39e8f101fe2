// The WhatsApp SQL: contacts, the message history in and out, and status webhooks.
import type { Queryable } from '../../db/db.ts';
import { pgJson } from '../../db/pg-text.ts';
import { valuesList } from '../../db/sql.ts';

export type OutboundStatus = 'queued' | 'offline' | 'accepted' | 'sent' | 'delivered' | 'read' | 'failed';

/** How far a message has got: a status only ever moves to a higher rank (never read → delivered). */
const RANKS: Readonly<Record<string, number>> = { accepted: 1, sent: 2, delivered: 3, read: 4, failed: 5 };

export function statusRank(status: string): number {
  return RANKS[status] ?? 0;
}

/** The same ranking in SQL, for a status column. */
const rankOf = (column: string) =>
  `CASE ${column} ${Object.entries(RANKS)
    .map(([status, rank]) => `WHEN '${status}' THEN ${rank}`)
    .join(' ')} ELSE 0 END`;

export interface InboundInsert {
  wamid: string;
  waUser: string;
  phoneNumberId: string | null;
  type: string;
  body: string | null;
  payload: unknown;
  messageAt: Date | null;
  at: Date;
}

/** PostgreSQL text cannot hold U+0000 (nor jsonb its escape, nor a lone surrogate's): it becomes U+FFFD. */
const noNul = (text: string) => text.replaceAll('\u0000', '\uFFFD');
const jsonText = pgJson;

export interface StatusInsert {
  wamid: string;
  status: string;
  recipient: string | null;
  statusAt: Date | null;
  errors: unknown;
  at: Date;
}

export const statusKey = (wamid: string, status: string) => `${wamid}\u0000${status}`;

export interface InboundMessage {
  id: number;
  wamid: string;
  waUser: string;
  phoneNumberId: string | null;
  type: string;
  body: string | null;
  status: 'received' | 'processed';
  payload: {
    message?: Record<string, unknown>;
    contact?: { name?: string; username?: string; waId?: string; userId?: string };
  };
  messageAt: Date | null;
}

export interface Contact {
  id: number;
  accountId: number;
  phone: string | null;
  bsuid: string | null;
  username: string | null;
}

const CONTACT_COLUMNS = 'c.id, c.account_id, c.phone, c.bsuid, c.username';

function toContact(row: Record<string, unknown>): Contact {
  return {
    id: Number(row.id),
    accountId: Number(row.account_id),
    phone: (row.phone as string | null) ?? null,
    bsuid: (row.bsuid as string | null) ?? null,
    username: (row.username as string | null) ?? null,
  };
}

const ID_COLUMNS = { phone: 'phone', bsuid: 'bsuid' } as const;

export interface OutboundMessage {
  id: number;
  sendKey: string;
  wamid: string | null;
  status: OutboundStatus;
}

export interface ConversationLine {
  id: number;
  direction: 'in' | 'out';
  waUser: string;
  accountId: number | null;
  type: string;
  body: string | null;
  status: string;
  error: unknown;
  createdAt: Date;
}

function toLine(row: Record<string, unknown>): ConversationLine {
  return {
    id: Number(row.id),
    direction: row.direction as 'in' | 'out',
    waUser: String(row.wa_user),
    accountId: row.account_id === null || row.account_id === undefined ? null : Number(row.account_id),
    type: String(row.type),
    body: (row.body as string | null) ?? null,
    status: String(row.status),
    error: typeof row.error === 'string' ? JSON.parse(row.error) : (row.error ?? null),
    createdAt: new Date(row.created_at as string),
  };
}

// whatsapp_messages: the history in (by wamid) and out (by send key).
export const whatsappMessages = {
  /**
   * Records inbound messages in one statement; returns the wamids it inserted (those seen before,
   * a redelivered webhook's, are left as they are and not returned).
   */
  async insertInbound(q: Queryable, messages: readonly InboundInsert[]): Promise<Set<string>> {
    if (messages.length === 0) return new Set();
    const r = await q.query<{ wamid: string }>(
      `INSERT INTO whatsapp_messages (direction, status, wamid, wa_user, phone_number_id, type, body, payload,
       message_at, created_at, updated_at)
     SELECT 'in', 'received', v.wamid, v.wa_user, v.phone_number_id, v.type, v.body, v.payload::jsonb,
            v.message_at::timestamptz, v.created_at::timestamptz, v.created_at::timestamptz
       FROM (VALUES ${valuesList(messages.length, 8)})
       AS v(wamid, wa_user, phone_number_id, type, body, payload, message_at, created_at)
     ON CONFLICT (wamid) DO NOTHING RETURNING wamid`,
      messages.flatMap((m) => [
        m.wamid,
        m.waUser,
        m.phoneNumberId,
        m.type,
        m.body === null ? null : noNul(m.body),
        jsonText(m.payload),
        m.messageAt,
        m.at,
      ]),
    );
    return new Set(r.rows.map((row) => row.wamid));
  },

  async findInbound(q: Queryable, wamid: string): Promise<InboundMessage | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT id, wamid, wa_user, phone_number_id, type, body, status, payload, message_at
       FROM whatsapp_messages WHERE wamid = $1 AND direction = 'in'`,
      [wamid],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      id: Number(row.id),
      wamid: String(row.wamid),
      waUser: String(row.wa_user),
      phoneNumberId: (row.phone_number_id as string | null) ?? null,
      type: String(row.type),
      body: (row.body as string | null) ?? null,
      status: row.status as 'received' | 'processed',
      payload: (typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload) as InboundMessage['payload'],
      messageAt: row.message_at ? new Date(row.message_at as string) : null,
    };
  },

  async markProcessed(q: Queryable, wamid: string, contactId: number | null, at: Date): Promise<void> {
    await q.query(
      `UPDATE whatsapp_messages SET status = 'processed', contact_id = $2, updated_at = $3 WHERE wamid = $1 AND direction = 'in'`,
      [wamid, contactId, at],
    );
  },

  /** The outbound row of a send key, created as queued on the first attempt. */
  async claimOutbound(
    q: Queryable,
    m: { sendKey: string; to: string; body: string; phoneNumberId: string | null; at: Date },
  ): Promise<OutboundMessage> {
    await q.query(
      `INSERT INTO whatsapp_messages (direction, send_key, wa_user, contact_id, phone_number_id, type, body, status,
       created_at, updated_at)
     VALUES ('out', $1, $2, (SELECT id FROM whatsapp_contacts WHERE phone = $2 OR bsuid = $2 LIMIT 1), $3, 'text',
       $4, 'queued', $5, $5)
     ON CONFLICT (send_key) DO NOTHING`,
      [m.sendKey, m.to, m.phoneNumberId, m.body, m.at],
    );
    const r = await q.query<Record<string, unknown>>(
      'SELECT id, send_key, wamid, status FROM whatsapp_messages WHERE send_key = $1',
      [m.sendKey],
    );
    const row = r.rows[0]!;
    return {
      id: Number(row.id),
      sendKey: String(row.send_key),
      wamid: (row.wamid as string | null) ?? null,
      status: row.status as OutboundStatus,
    };
  },

  /** The Graph API accepted the message: store its wamid and apply statuses that arrived first. */
  async markAccepted(q: Queryable, id: number, wamid: string, request: unknown, at: Date): Promise<void> {
    await q.query(
      `UPDATE whatsapp_messages SET wamid = $2, status = 'accepted', payload = $3, message_at = $4, updated_at = $4
      WHERE id = $1`,
      [id, wamid, JSON.stringify(request), at],
    );
    await q.query(
      `UPDATE whatsapp_messages m SET status = s.status, error = COALESCE(s.errors, m.error), updated_at = $3
       FROM (SELECT status, errors FROM whatsapp_statuses
              WHERE wamid = $2 AND status IN ('sent', 'delivered', 'read', 'failed')
              ORDER BY ${rankOf('status')} DESC LIMIT 1) s
      WHERE m.id = $1`,
      [id, wamid, at],
    );
  },

  async markOffline(q: Queryable, id: number, request: unknown, at: Date): Promise<void> {
    await q.query(`UPDATE whatsapp_messages SET status = 'offline', payload = $2, updated_at = $3 WHERE id = $1`, [
      id,
      JSON.stringify(request),
      at,
    ]);
  },

  async markFailed(q: Queryable, id: number, error: unknown, at: Date): Promise<void> {
    await q.query(`UPDATE whatsapp_messages SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1`, [
      id,
      JSON.stringify(error),
      at,
    ]);
  },

  /** The latest messages in and out, newest first; optionally one user's (phone, BSUID or account id). */
  async recent(q: Queryable, options: { user?: string; limit: number }): Promise<ConversationLine[]> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT m.id, m.direction, m.wa_user, c.account_id, m.type, m.body, m.status, m.error, m.created_at
       FROM whatsapp_messages m LEFT JOIN whatsapp_contacts c ON c.id = m.contact_id
      WHERE $1::text IS NULL OR m.wa_user = $1 OR c.phone = $1 OR c.bsuid = $1 OR c.account_id::text = $1
      ORDER BY m.id DESC LIMIT $2`,
      [options.user ?? null, options.limit],
    );
    return r.rows.map(toLine);
  },

  /** Replies kept in the offline outbox (no WHATSAPP_ACCESS_TOKEN), newest first. */
  async offlineOutbox(q: Queryable, limit: number): Promise<ConversationLine[]> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT m.id, m.direction, m.wa_user, c.account_id, m.type, m.body, m.status, m.error, m.created_at
       FROM whatsapp_messages m LEFT JOIN whatsapp_contacts c ON c.id = m.contact_id
      WHERE m.status = 'offline' ORDER BY m.id DESC LIMIT $1`,
      [limit],
    );
    return r.rows.map(toLine);
  },
};

// whatsapp_statuses: Meta's status webhooks, and the messages they move forward.
export const whatsappStatuses = {
  /**
   * Records status webhooks (once per wamid and status) and moves our messages forward: each to the
   * highest status newly recorded for it, if that is further than where it is. Two statements,
   * whatever the number of statuses. Returns the new ones, as statusKey(wamid, status).
   */
  async record(q: Queryable, statuses: readonly StatusInsert[]): Promise<Set<string>> {
    if (statuses.length === 0) return new Set();
    const inserted = await q.query<{ wamid: string; status: string; errors: unknown }>(
      `INSERT INTO whatsapp_statuses (wamid, status, recipient, status_at, errors, received_at)
     SELECT v.wamid, v.status, v.recipient, v.status_at::timestamptz, v.errors::jsonb, v.received_at::timestamptz
       FROM (VALUES ${valuesList(statuses.length, 6)}) AS v(wamid, status, recipient, status_at, errors, received_at)
     ON CONFLICT (wamid, status) DO NOTHING RETURNING wamid, status, errors`,
      statuses.flatMap((s) => [
        s.wamid,
        s.status,
        s.recipient,
        s.statusAt,
        s.errors === undefined ? null : jsonText(s.errors),
        s.at,
      ]),
    );
    const furthest = new Map<string, { status: string; errors: unknown }>();
    for (const row of inserted.rows) {
      const seen = furthest.get(row.wamid);
      if (statusRank(row.status) > 0 && (!seen || statusRank(row.status) > statusRank(seen.status))) {
        furthest.set(row.wamid, { status: row.status, errors: row.errors });
      }
    }
    if (furthest.size > 0) {
      const moves = [...furthest.entries()];
      await q.query(
        `UPDATE whatsapp_messages m SET status = v.status, error = COALESCE(v.errors::jsonb, m.error),
         updated_at = v.at::timestamptz
         FROM (VALUES ${valuesList(moves.length, 5)}) AS v(wamid, status, rank, errors, at)
        WHERE m.wamid = v.wamid AND m.direction = 'out' AND (${rankOf('m.status')}) < v.rank::int`,
        moves.flatMap(([wamid, s]) => [
          wamid,
          s.status,
          statusRank(s.status),
          s.errors === null || s.errors === undefined ? null : JSON.stringify(s.errors),
          statuses[0]!.at,
        ]),
      );
    }
    return new Set(inserted.rows.map((row) => statusKey(row.wamid, row.status)));
  },
};

// whatsapp_contacts and whatsapp_contact_former_ids: who a user is (identity.ts holds the rules).
export const whatsappContacts = {
  /**
   * The contacts that hold this BSUID and this phone number now, locked for the rest of the
   * transaction (they may be one contact, two, or none). The rules that choose among them are in
   * identity.ts.
   */
  async holding(
    q: Queryable,
    who: { phone: string | null; bsuid: string | null },
  ): Promise<{ byBsuid: Contact | undefined; byPhone: Contact | undefined }> {
    if (!who.phone && !who.bsuid) return { byBsuid: undefined, byPhone: undefined };
    const r = await q.query<Record<string, unknown>>(
      `SELECT ${CONTACT_COLUMNS} FROM whatsapp_contacts c
      WHERE ($1::text IS NOT NULL AND c.bsuid = $1) OR ($2::text IS NOT NULL AND c.phone = $2)
      ORDER BY c.id FOR UPDATE`,
      [who.bsuid, who.phone],
    );
    const contacts = r.rows.map(toContact);
    return {
      byBsuid: who.bsuid ? contacts.find((c) => c.bsuid === who.bsuid) : undefined,
      byPhone: who.phone ? contacts.find((c) => c.phone === who.phone) : undefined,
    };
  },

  /** The contact that used this id (a phone number or a BSUID) before, locked. */
  async formerlyHolding(q: Queryable, id: string, kind: 'phone' | 'bsuid'): Promise<Contact | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT ${CONTACT_COLUMNS} FROM whatsapp_contact_former_ids f JOIN whatsapp_contacts c ON c.id = f.contact_id
      WHERE f.former_id = $1 AND f.kind = $2 FOR UPDATE OF c`,
      [id, kind],
    );
    return r.rows[0] ? toContact(r.rows[0]) : undefined;
  },

  /** The contact of an account (one account has at most one contact). */
  async ofAccount(q: Queryable, accountId: number): Promise<Contact | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT ${CONTACT_COLUMNS} FROM whatsapp_contacts c WHERE c.account_id = $1`,
      [accountId],
    );
    return r.rows[0] ? toContact(r.rows[0]) : undefined;
  },

  /** The contact that holds this id now, else the one that held it before (phone or BSUID). */
  async byAnyId(q: Queryable, id: string): Promise<Contact | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT ${CONTACT_COLUMNS}, 0 AS rank FROM whatsapp_contacts c WHERE c.phone = $1 OR c.bsuid = $1
     UNION ALL
     SELECT ${CONTACT_COLUMNS}, 1 AS rank FROM whatsapp_contact_former_ids f
       JOIN whatsapp_contacts c ON c.id = f.contact_id WHERE f.former_id = $1
     ORDER BY rank LIMIT 1`,
      [id],
    );
    return r.rows[0] ? toContact(r.rows[0]) : undefined;
  },

  /** Inserts a contact; undefined when a concurrent first message of the same user won the race. */
  async insert(
    q: Queryable,
    c: {
      accountId: number;
      phone: string | null;
      bsuid: string | null;
      name: string | null;
      username?: string | null;
      at: Date;
    },
  ): Promise<Contact | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `INSERT INTO whatsapp_contacts AS c (account_id, phone, bsuid, profile_name, username, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING ${CONTACT_COLUMNS}`,
      [c.accountId, c.phone, c.bsuid, c.name, c.username ?? null, c.at],
    );
    const contact = r.rows[0] ? toContact(r.rows[0]) : undefined;
    if (contact) {
      // An id that is now someone's current one is no longer anyone's former one.
      await q.query('DELETE FROM whatsapp_contact_former_ids WHERE former_id = $1 OR former_id = $2', [
        c.phone,
        c.bsuid,
      ]);
    }
    return contact;
  },

  /** What a later message tells about the user that is not an identifier: names, the last message time. */
  async touch(
    q: Queryable,
    id: number,
    c: { name: string | null; username?: string | null; inboundAt: Date },
  ): Promise<void> {
    await q.query(
      `UPDATE whatsapp_contacts SET profile_name = COALESCE($2, profile_name), username = COALESCE($3, username),
       last_inbound_at = GREATEST(COALESCE(last_inbound_at, $4), $4)
     WHERE id = $1`,
      [id, c.name, c.username ?? null, c.inboundAt],
    );
  },

  /**
   * Gives the contact this phone number or BSUID as its current one; the one it replaces is kept
   * as a former id. Refused (false) when another contact holds it now: identity.ts decides then.
   */
  async setId(q: Queryable, contact: Contact, kind: 'phone' | 'bsuid', value: string, at: Date): Promise<boolean> {
    const column = ID_COLUMNS[kind];
    const current = contact[kind];
    if (current === value) return true;
    const taken = await q.query(`SELECT 1 FROM whatsapp_contacts WHERE ${column} = $1 AND id <> $2`, [
      value,
      contact.id,
    ]);
    if (taken.rows.length > 0) return false;
    if (current !== null) {
      await q.query(
        `INSERT INTO whatsapp_contact_former_ids (former_id, kind, contact_id, replaced_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (former_id) DO UPDATE SET kind = EXCLUDED.kind, contact_id = EXCLUDED.contact_id,
         replaced_at = EXCLUDED.replaced_at`,
        [current, kind, contact.id, at],
      );
    }
    await q.query('DELETE FROM whatsapp_contact_former_ids WHERE former_id = $1', [value]);
    await q.query(`UPDATE whatsapp_contacts SET ${column} = $2 WHERE id = $1`, [contact.id, value]);
    contact[kind] = value;
    return true;
  },
};

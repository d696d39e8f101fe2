// The SQL of the dashboard's WhatsApp page that the repository does not already have: one
// contact's conversation, newest first, in keyset pages on whatsapp_messages_contact_idx. The
// recent messages and the offline outbox are the repository's own queries (whatsappMessages.recent
// and .offlineOutbox), the ones `backend whatsapp conversations|outbox` prints.
import type { Queryable } from '../db/db.ts';
import type { ConversationLine } from '../domains/whatsapp/index.ts';
import type { ExplainCase } from './explain.ts';

export interface ContactRow {
  id: number;
  account_id: number;
  phone: string | null;
  bsuid: string | null;
  profile_name: string | null;
  last_inbound_at: Date | null;
}

export const CONTACT_BY_ACCOUNT = `
  SELECT id, account_id, phone, bsuid, profile_name, last_inbound_at FROM whatsapp_contacts WHERE account_id = $1`;

/**
 * One contact's messages in and out, newest first, before a cursor (a message id), on
 * whatsapp_messages_contact_idx read backwards. The contact is matched as a one-value range (see
 * LEDGER_PAGE in accounts.queries.ts): with `=` the planner walked the primary key backwards and
 * filtered, 130 ms with 200,000 messages for a contact whose messages are all old.
 */
export const CONVERSATION_PAGE = `
  SELECT m.id, m.direction, m.wa_user, $1::bigint AS account_id, m.type, m.body, m.status, m.error, m.created_at
    FROM whatsapp_messages m
   WHERE m.contact_id >= $2 AND m.contact_id <= $2 AND ($3::bigint IS NULL OR m.id < $3)
   ORDER BY m.contact_id DESC, m.id DESC LIMIT $4`;

export async function contactOfAccount(q: Queryable, accountId: number): Promise<ContactRow | undefined> {
  const row = (await q.query<ContactRow>(CONTACT_BY_ACCOUNT, [accountId])).rows[0];
  return row ? { ...row, id: Number(row.id), account_id: Number(row.account_id) } : undefined;
}

export async function conversationPage(
  q: Queryable,
  contact: ContactRow,
  page: { before?: number | undefined; limit: number },
): Promise<ConversationLine[]> {
  const r = await q.query<Record<string, unknown>>(CONVERSATION_PAGE, [
    contact.account_id,
    contact.id,
    page.before ?? null,
    page.limit,
  ]);
  return r.rows.map((row) => ({
    id: Number(row.id),
    direction: row.direction as 'in' | 'out',
    waUser: String(row.wa_user),
    accountId: contact.account_id,
    type: String(row.type),
    body: (row.body as string | null) ?? null,
    status: String(row.status),
    error: typeof row.error === 'string' ? JSON.parse(row.error) : (row.error ?? null),
    createdAt: new Date(row.created_at as string),
  }));
}

/**
 * The WhatsApp page's own list queries, for EXPLAIN in the benchmark.
 * @public bench/dashboard.bench.ts imports every src/admin/*.queries.ts by file name.
 */
export const EXPLAIN_CASES: ExplainCase[] = [
  { name: 'whatsapp: contact of an account', sql: CONTACT_BY_ACCOUNT, params: [1] },
  { name: 'whatsapp: one conversation, newest first', sql: CONVERSATION_PAGE, params: [1, 1, null, 101] },
  { name: 'whatsapp: one conversation, next page', sql: CONVERSATION_PAGE, params: [1, 1, 1_000_000, 101] },
];

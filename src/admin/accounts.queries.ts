// The SQL of the dashboard's accounts pages: accounts newest first and found by id, phone or BSUID,
// an account's ledger newest first (keyset pages on credit_ledger_account_idx), and the Stripe
// payments kept because they named no account. EXPLAIN_CASES is for the dashboard benchmark.
import type { Queryable } from '../db/db.ts';
import type { ExplainCase } from './explain.ts';

export interface AccountRow {
  id: number;
  plan: string | null;
  monthly_credits: number;
  balance: number;
  created_at: Date;
  phone: string | null;
  bsuid: string | null;
  profile_name: string | null;
  last_inbound_at: Date | null;
}

const ACCOUNT_COLUMNS = `a.id, a.plan, a.monthly_credits, a.balance, a.created_at,
  c.phone, c.bsuid, c.profile_name, c.last_inbound_at`;

/** Accounts newest first, after a cursor (the last id of the previous page); on the primary key. */
export const ACCOUNTS_PAGE = `
  SELECT ${ACCOUNT_COLUMNS}
    FROM accounts a LEFT JOIN whatsapp_contacts c ON c.account_id = a.id
   WHERE ($1::bigint IS NULL OR a.id < $1)
   ORDER BY a.id DESC LIMIT $2`;

/**
 * Accounts found by an exact account id, phone number or BSUID: each through its own unique index
 * (a phone and a BSUID are looked up together, an OR on one table), never a scan.
 */
export const ACCOUNTS_SEARCH = `
  SELECT ${ACCOUNT_COLUMNS}
    FROM accounts a LEFT JOIN whatsapp_contacts c ON c.account_id = a.id
   WHERE a.id IN (SELECT $1::bigint WHERE $1::bigint IS NOT NULL
                  UNION ALL
                  SELECT account_id FROM whatsapp_contacts WHERE phone = $2 OR bsuid = $3)
   ORDER BY a.id DESC LIMIT $4`;

export const ACCOUNT_BY_ID = `
  SELECT ${ACCOUNT_COLUMNS}
    FROM accounts a LEFT JOIN whatsapp_contacts c ON c.account_id = a.id
   WHERE a.id = $1`;

export interface LedgerRow {
  id: number;
  amount: number;
  kind: string;
  idempotency_key: string;
  source_ref: string | null;
  balance_after: number;
  created_at: Date;
}

/**
 * One account's ledger, newest first, before a cursor (an entry id), on (account_id, id) read
 * backwards. The account is matched as a one-value range, not with `=`: with `=` the planner
 * sees the ORDER BY as `id` alone and may walk the primary key backwards, filtering, which for an
 * account whose entries are all old reads every newer row of every account (25 ms at 100,000
 * entries, growing with the table). The range leaves only this index able to give the order.
 */
export const LEDGER_PAGE = `
  SELECT id, amount, kind, idempotency_key, source_ref, balance_after, created_at
    FROM credit_ledger
   WHERE account_id >= $1 AND account_id <= $1 AND ($2::bigint IS NULL OR id < $2)
   ORDER BY account_id DESC, id DESC LIMIT $3`;

export interface UnmatchedPaymentRow {
  event_id: string;
  object_id: string;
  client_reference_id: string | null;
  reason: string;
  amount_total: string | null;
  currency: string | null;
  created_at: Date;
}

/**
 * Paid Stripe sessions that named no account (kept by the webhook), newest first. The table only
 * grows with payments that went wrong, so sorting it whole stays cheap; a cursor pages it.
 */
export const UNMATCHED_PAYMENTS = `
  SELECT event_id, object_id, client_reference_id, reason,
         payload->>'amount_total' AS amount_total, payload->>'currency' AS currency, created_at
    FROM stripe_unmatched_payments
   WHERE ($1::timestamptz IS NULL OR (created_at, event_id) < ($1::timestamptz, $2::text))
   ORDER BY created_at DESC, event_id DESC LIMIT $3`;

/** What the search box was given, read as an account id, a phone number and a BSUID. */
export interface AccountSearch {
  accountId: number | null;
  phone: string | null;
  bsuid: string | null;
}

/**
 * "42" is account 42 or the phone 42…; "+1 555-000 1234" is a phone (WhatsApp keeps digits only);
 * anything else is a BSUID.
 */
export function parseAccountSearch(text: string): AccountSearch {
  const trimmed = text.trim();
  const digits = trimmed.replace(/[\s().+-]/g, '');
  const accountId = /^[1-9]\d{0,15}$/.test(trimmed) && Number.isSafeInteger(Number(trimmed)) ? Number(trimmed) : null;
  const phone = /^\d{4,20}$/.test(digits) ? digits : null;
  return { accountId, phone, bsuid: trimmed };
}

export async function listAccounts(
  q: Queryable,
  page: { after?: number | undefined; search?: AccountSearch | undefined; limit: number },
): Promise<AccountRow[]> {
  const r = page.search
    ? await q.query<AccountRow>(ACCOUNTS_SEARCH, [
        page.search.accountId,
        page.search.phone,
        page.search.bsuid,
        page.limit,
      ])
    : await q.query<AccountRow>(ACCOUNTS_PAGE, [page.after ?? null, page.limit]);
  return r.rows.map((row) => ({ ...row, id: Number(row.id), balance: Number(row.balance) }));
}

export async function findAccount(q: Queryable, id: number): Promise<AccountRow | undefined> {
  const row = (await q.query<AccountRow>(ACCOUNT_BY_ID, [id])).rows[0];
  return row ? { ...row, id: Number(row.id), balance: Number(row.balance) } : undefined;
}

export async function ledgerPage(
  q: Queryable,
  accountId: number,
  page: { before?: number | undefined; limit: number },
): Promise<LedgerRow[]> {
  const r = await q.query<LedgerRow>(LEDGER_PAGE, [accountId, page.before ?? null, page.limit]);
  return r.rows.map((row) => ({
    ...row,
    id: Number(row.id),
    amount: Number(row.amount),
    balance_after: Number(row.balance_after),
  }));
}

export async function unmatchedPayments(
  q: Queryable,
  page: { before?: { at: Date; eventId: string } | undefined; limit: number },
): Promise<UnmatchedPaymentRow[]> {
  const r = await q.query<UnmatchedPaymentRow>(UNMATCHED_PAYMENTS, [
    page.before?.at ?? null,
    page.before?.eventId ?? null,
    page.limit,
  ]);
  return r.rows;
}

/**
 * The accounts pages' list queries on representative inputs, for EXPLAIN in the benchmark.
 * @public bench/dashboard.bench.ts imports every src/admin/*.queries.ts by file name.
 */
export const EXPLAIN_CASES: ExplainCase[] = [
  { name: 'accounts: newest first', sql: ACCOUNTS_PAGE, params: [null, 51] },
  { name: 'accounts: next page (cursor)', sql: ACCOUNTS_PAGE, params: [500, 51] },
  { name: 'accounts: search by account id', sql: ACCOUNTS_SEARCH, params: [42, '42', '42', 51] },
  { name: 'accounts: search by phone', sql: ACCOUNTS_SEARCH, params: [null, '15550001234', '+1 555 000 1234', 51] },
  { name: 'accounts: search by BSUID', sql: ACCOUNTS_SEARCH, params: [null, null, 'US.1234567890', 51] },
  { name: 'account: one', sql: ACCOUNT_BY_ID, params: [1] },
  { name: 'account ledger: newest first', sql: LEDGER_PAGE, params: [1, null, 51] },
  { name: 'account ledger: next page (cursor)', sql: LEDGER_PAGE, params: [1, 50_000, 51] },
  { name: 'stripe unmatched payments', sql: UNMATCHED_PAYMENTS, params: [null, null, 51] },
];

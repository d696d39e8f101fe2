// The SQL of the dashboard's posts page: published posts newest first (keyset on the primary key),
// or one account's (on posts_account_idx). EXPLAIN_CASES is for the dashboard benchmark.
import type { Queryable } from '../db/db.ts';
import type { ExplainCase } from './explain.ts';

export interface PostRow {
  id: number;
  slug: string;
  title: string;
  account_id: number;
  source_url: string | null;
  topic: string | null;
  model: string;
  offline: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micros: number;
  credits: number;
  created_at: Date;
}

const POST_COLUMNS = `id, slug, title, account_id, source_url, topic, model, offline, prompt_tokens,
  completion_tokens, cost_micros, credits, created_at`;

/** Published posts newest first, before a cursor (a post id): the primary key read backwards. */
export const POSTS_PAGE = `
  SELECT ${POST_COLUMNS}
    FROM posts
   WHERE ($1::bigint IS NULL OR id < $1)
   ORDER BY id DESC LIMIT $2`;

/**
 * One account's posts, newest first, on posts_account_idx read backwards. The account is matched
 * as a one-value range so that no plan walks the primary key and filters (see LEDGER_PAGE in
 * accounts.queries.ts).
 */
export const ACCOUNT_POSTS_PAGE = `
  SELECT ${POST_COLUMNS}
    FROM posts
   WHERE account_id >= $1 AND account_id <= $1 AND ($2::bigint IS NULL OR id < $2)
   ORDER BY account_id DESC, id DESC LIMIT $3`;

export async function postsPage(
  q: Queryable,
  page: { accountId?: number | undefined; before?: number | undefined; limit: number },
): Promise<PostRow[]> {
  const r =
    page.accountId === undefined
      ? await q.query<PostRow>(POSTS_PAGE, [page.before ?? null, page.limit])
      : await q.query<PostRow>(ACCOUNT_POSTS_PAGE, [page.accountId, page.before ?? null, page.limit]);
  return r.rows.map((row) => ({
    ...row,
    id: Number(row.id),
    account_id: Number(row.account_id),
    cost_micros: Number(row.cost_micros),
  }));
}

/**
 * The posts pages' list queries, for EXPLAIN in the benchmark.
 * @public bench/dashboard.bench.ts imports every src/admin/*.queries.ts by file name.
 */
export const EXPLAIN_CASES: ExplainCase[] = [
  { name: 'posts: newest first', sql: POSTS_PAGE, params: [null, 51] },
  { name: 'posts: next page (cursor)', sql: POSTS_PAGE, params: [1_000, 51] },
  { name: 'posts: one account', sql: ACCOUNT_POSTS_PAGE, params: [1, null, 51] },
];

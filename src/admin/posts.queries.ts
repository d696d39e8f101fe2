// The SQL of the dashboard's posts page: published posts newest first (keyset on the primary key),
// or one account's (on posts_account_idx). EXPLAIN_CASES is for the dashboard benchmark.
import type { Queryable } from '../db/db.ts';

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

export const POSTS_PAGE = `
  SELECT id, slug, title, account_id, source_url, topic, model, offline, prompt_tokens, completion_tokens,
         cost_micros, credits, created_at
    FROM posts
   WHERE ($1::bigint IS NULL OR account_id = $1) AND ($2::bigint IS NULL OR id < $2)
   ORDER BY id DESC LIMIT $3`;

export async function postsPage(
  q: Queryable,
  page: { accountId?: number | undefined; before?: number | undefined; limit: number },
): Promise<PostRow[]> {
  const r = await q.query<PostRow>(POSTS_PAGE, [page.accountId ?? null, page.before ?? null, page.limit]);
  return r.rows.map((row) => ({
    ...row,
    id: Number(row.id),
    account_id: Number(row.account_id),
    cost_micros: Number(row.cost_micros),
  }));
}

export interface ExplainCase {
  name: string;
  sql: string;
  params: unknown[];
}

export const EXPLAIN_CASES: ExplainCase[] = [
  { name: 'posts: newest first', sql: POSTS_PAGE, params: [null, null, 51] },
  { name: 'posts: next page (cursor)', sql: POSTS_PAGE, params: [null, 1_000, 51] },
  { name: 'posts: one account', sql: POSTS_PAGE, params: [1, null, 51] },
];

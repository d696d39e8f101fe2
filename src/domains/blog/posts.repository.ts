// The posts SQL.
import type { Queryable } from '../../db/db.ts';
import { pgText, pgTextOrNull } from '../../db/pg-text.ts';

export interface NewPost {
  requestId: string;
  slug: string;
  accountId: number;
  pageId: number | null;
  sourceUrl: string | null;
  topic: string | null;
  title: string;
  summary: string;
  markdown: string;
  html: string;
  lang: string | null;
  model: string;
  offline: boolean;
  promptTokens: number;
  completionTokens: number;
  costMicros: number;
  credits: number;
  createdAt: Date;
}

export interface StoredPost {
  id: number;
  requestId: string;
  slug: string;
  accountId: number;
  sourceUrl: string | null;
  topic: string | null;
  title: string;
  summary: string;
  html: string;
  lang: string | null;
  model: string;
  offline: boolean;
  createdAt: Date;
}

const COLUMNS =
  'id, request_id, slug, account_id, source_url, topic, title, summary, html, lang, model, offline, created_at';

function toPost(row: Record<string, unknown>): StoredPost {
  return {
    id: Number(row.id),
    requestId: String(row.request_id),
    slug: String(row.slug),
    accountId: Number(row.account_id),
    sourceUrl: (row.source_url as string | null) ?? null,
    topic: (row.topic as string | null) ?? null,
    title: String(row.title),
    summary: String(row.summary),
    html: String(row.html),
    lang: (row.lang as string | null) ?? null,
    model: String(row.model),
    offline: Boolean(row.offline),
    createdAt: new Date(row.created_at as string),
  };
}

export const posts = {
  /**
   * Stores the post of a request; the post already stored for it when there is one. The written
   * text loses any U+0000 first (PostgreSQL text refuses it), so the post returned is what is stored.
   */
  async insert(q: Queryable, p: NewPost): Promise<{ post: StoredPost; created: boolean }> {
    const r = await q.query<Record<string, unknown>>(
      `INSERT INTO posts (request_id, slug, account_id, page_id, source_url, topic, title, summary, markdown, html, lang,
       model, offline, prompt_tokens, completion_tokens, cost_micros, credits, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
     ON CONFLICT (request_id) DO NOTHING RETURNING ${COLUMNS}`,
      [
        p.requestId,
        p.slug,
        p.accountId,
        p.pageId,
        p.sourceUrl,
        pgTextOrNull(p.topic),
        pgText(p.title),
        pgText(p.summary),
        pgText(p.markdown),
        pgText(p.html),
        pgTextOrNull(p.lang),
        pgText(p.model),
        p.offline,
        p.promptTokens,
        p.completionTokens,
        p.costMicros,
        p.credits,
        p.createdAt,
      ],
    );
    if (r.rows[0]) return { post: toPost(r.rows[0]), created: true };
    return { post: (await posts.findByRequest(q, p.requestId))!, created: false };
  },

  async findByRequest(q: Queryable, requestId: string): Promise<StoredPost | undefined> {
    const r = await q.query<Record<string, unknown>>(`SELECT ${COLUMNS} FROM posts WHERE request_id = $1`, [requestId]);
    return r.rows[0] ? toPost(r.rows[0]) : undefined;
  },

  async findBySlug(q: Queryable, slug: string): Promise<StoredPost | undefined> {
    const r = await q.query<Record<string, unknown>>(`SELECT ${COLUMNS} FROM posts WHERE slug = $1`, [slug]);
    return r.rows[0] ? toPost(r.rows[0]) : undefined;
  },
};

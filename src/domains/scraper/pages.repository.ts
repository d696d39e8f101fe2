// The scraped_pages SQL.
import type { Queryable } from '../../db/db.ts';
import { pgText, pgTextOrNull } from '../../db/pg-text.ts';

export interface StoredPage {
  id: number;
  url: string;
  finalUrl: string;
  title: string;
  byline: string | null;
  lang: string | null;
  text: string;
  contentHash: string;
  fetchedAt: Date;
}

export interface NewPage {
  url: string;
  finalUrl: string;
  httpStatus: number;
  contentType: string;
  charset: string;
  bytes: number;
  contentHash: string;
  title: string;
  byline: string | null;
  lang: string | null;
  siteName: string | null;
  excerpt: string | null;
  text: string;
  wordCount: number;
  fetchedAt: Date;
}

const COLUMNS = 'id, url, final_url, title, byline, lang, text, content_hash, fetched_at';

function toPage(row: Record<string, unknown>): StoredPage {
  return {
    id: Number(row.id),
    url: String(row.url),
    finalUrl: String(row.final_url),
    title: String(row.title),
    byline: (row.byline as string | null) ?? null,
    lang: (row.lang as string | null) ?? null,
    text: String(row.text),
    contentHash: String(row.content_hash),
    fetchedAt: new Date(row.fetched_at as string),
  };
}

export const scrapedPages = {
  /** Stores a fetch. The page's own words lose any U+0000 first (PostgreSQL text refuses it). */
  async insert(q: Queryable, p: NewPage): Promise<StoredPage> {
    const r = await q.query<Record<string, unknown>>(
      `INSERT INTO scraped_pages (url, final_url, http_status, content_type, charset, bytes, content_hash, title, byline,
       lang, site_name, excerpt, text, word_count, fetched_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING ${COLUMNS}`,
      [
        p.url,
        p.finalUrl,
        p.httpStatus,
        p.contentType,
        p.charset,
        p.bytes,
        p.contentHash,
        pgText(p.title),
        pgTextOrNull(p.byline),
        pgTextOrNull(p.lang),
        pgTextOrNull(p.siteName),
        pgTextOrNull(p.excerpt),
        pgText(p.text),
        p.wordCount,
        p.fetchedAt,
      ],
    );
    return toPage(r.rows[0]!);
  },

  /** The latest fetch of this URL since `since`, if any. */
  async recent(q: Queryable, url: string, since: Date): Promise<StoredPage | undefined> {
    const r = await q.query<Record<string, unknown>>(
      `SELECT ${COLUMNS} FROM scraped_pages WHERE url = $1 AND fetched_at >= $2 ORDER BY fetched_at DESC LIMIT 1`,
      [url, since],
    );
    return r.rows[0] ? toPage(r.rows[0]) : undefined;
  },

  async find(q: Queryable, id: number): Promise<StoredPage | undefined> {
    const r = await q.query<Record<string, unknown>>(`SELECT ${COLUMNS} FROM scraped_pages WHERE id = $1`, [id]);
    return r.rows[0] ? toPage(r.rows[0]) : undefined;
  },
};

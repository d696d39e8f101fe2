// scraper.scrape_page (keyed by the request id): fetch one user-supplied URL through the safe
// fetcher, extract the article, store the page (or reuse a recent fetch of the same URL), then,
// when asked, hand over to blog.generate_post. A failure the user caused (a refused address, not a
// web page, a 404, …) is final and told to the user in plain words; timeouts and 5xx retry, and
// the last attempt tells the user too, whatever failed (once: the reply is keyed by the request).
// The page's text loses any NUL character before it is stored (extract.ts, pages.repository.ts).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { defineTask, type TaskContext } from '../../tasks/define-task.ts';
import { NonRetryableError } from '../../tasks/task-errors.ts';
import { enqueueReply } from '../whatsapp/index.ts';
import { ExtractionError, extractArticle } from './extract.ts';
import { type StoredPage, scrapedPages } from './pages.repository.ts';
import { FetchRefusedError, type SafeFetcher } from './safe-fetch.ts';

export interface ScraperServices {
  fetcher: SafeFetcher;
  /** A fetch of the same URL younger than this is reused. */
  reuseWithinMs: number;
}

declare module '../../tasks/define-task.ts' {
  interface TaskServices {
    scraper: ScraperServices;
  }
}

export const scrapePagePayload = z
  .object({
    requestId: z.string().min(1).max(256),
    url: z.string().min(1).max(2048),
    accountId: z.number().int().positive(),
    /** Who asked, on WhatsApp: where failures (and the post) are told. */
    to: z.string().min(1).max(160),
    replyTo: z.string().min(1).max(256).optional(),
    /** Enqueue blog.generate_post from the page once stored. */
    generatePost: z.boolean().default(true),
  })
  .strict();

export const scrapePageTask = defineTask({
  name: 'scraper.scrape_page',
  queue: 'scraper',
  payload: scrapePagePayload,
  idempotencyKey: (payload) => payload.requestId,
  deadlineSeconds: 60,
  async handler(ctx) {
    const p = ctx.payload;
    try {
      return await scrapeAndHandOver(ctx);
    } catch (err) {
      const told = userMessageFor(err);
      // A cause the user can fix, or the last attempt whatever failed (the database, the queue,
      // a bug): say so once (the reply is keyed by the request) and stop. Otherwise retry.
      const final = told ? !told.retryable || ctx.lastAttempt : ctx.lastAttempt;
      if (!final) throw err;
      await enqueueReply(ctx.enqueue, {
        to: p.to,
        text: `Sorry, I couldn't read ${p.url}. ${told?.message ?? SOMETHING_FAILED}`,
        key: `scrape-failed:${p.requestId}`,
        replyTo: p.replyTo,
        accountId: p.accountId,
      });
      throw new NonRetryableError(`${p.url}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  },
});

/** What the user reads when the last attempt failed on our side. */
const SOMETHING_FAILED = 'Something went wrong on my side. Please try again later.';

async function scrapeAndHandOver(ctx: TaskContext<z.output<typeof scrapePagePayload>>) {
  const p = ctx.payload;
  const { fetcher, reuseWithinMs } = ctx.services.scraper;
  const now = ctx.clock.now();
  let page = await scrapedPages.recent(ctx.db, p.url, new Date(now - reuseWithinMs));
  const reused = page !== undefined;
  page ??= await fetchAndStore(ctx.db, fetcher, p.url, new Date(now), ctx.signal);
  ctx.log.info(
    { url: p.url, pageId: page.id, reused, words: page.text.length },
    `page ${reused ? 'reused' : 'stored'}`,
  );
  if (p.generatePost) {
    await ctx.enqueue(
      'blog.generate_post',
      {
        requestId: p.requestId,
        accountId: p.accountId,
        pageId: page.id,
        to: p.to,
        ...(p.replyTo ? { replyTo: p.replyTo } : {}),
      },
      { key: p.requestId },
    );
  }
  return { pageId: page.id, reused, finalUrl: page.finalUrl, title: page.title };
}

async function fetchAndStore(
  db: Parameters<typeof scrapedPages.insert>[0],
  fetcher: SafeFetcher,
  url: string,
  at: Date,
  signal: AbortSignal,
): Promise<StoredPage> {
  const fetched = await fetcher.fetch(url, { signal });
  const article = extractArticle(fetched.html, fetched.finalUrl);
  return scrapedPages.insert(db, {
    url,
    finalUrl: fetched.finalUrl,
    httpStatus: fetched.status,
    contentType: fetched.contentType,
    charset: fetched.charset,
    bytes: fetched.bytes,
    contentHash: createHash('sha256').update(fetched.html).digest('hex'),
    title: article.title,
    byline: article.byline,
    lang: article.lang,
    siteName: article.siteName,
    excerpt: article.excerpt,
    text: article.text,
    wordCount: article.wordCount,
    fetchedAt: at,
  });
}

function userMessageFor(err: unknown): { message: string; retryable: boolean } | undefined {
  if (err instanceof FetchRefusedError) return { message: err.userMessage, retryable: err.retryable };
  if (err instanceof ExtractionError) return { message: err.userMessage, retryable: false };
  return undefined;
}

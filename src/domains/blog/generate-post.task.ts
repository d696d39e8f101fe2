// blog.generate_post (keyed by the request id): reserve the post's credits, have the writer (the
// configured model, or the offline writer) write it, check the answer again, render the Markdown
// to safe HTML, store the post under a unique slug, settle the credits and enqueue the WhatsApp
// reply with its link: the last three in one transaction. A failure for good (a refused request,
// an unusable answer, or the last attempt, whether the writer or that final transaction failed)
// releases the reservation and tells the user, once. A hold left behind by an attempt that never
// got that far (the process died, the deadline passed) is released by credits.sweep_holds, which
// tells the user through postHoldOwner below.
import { z } from 'zod';
import type { Queryable } from '../../db/db.ts';
import { defineTask } from '../../tasks/define-task.ts';
import { NonRetryableError } from '../../tasks/task-errors.ts';
import type { HoldOwner } from '../credits/index.ts';
import {
  holdState,
  InsufficientCreditsError,
  insufficientCreditsReply,
  inTransaction,
  release,
  reserve,
  settle,
} from '../credits/index.ts';
import { scrapedPages } from '../scraper/index.ts';
import { enqueueReply } from '../whatsapp/index.ts';
import { posts, type StoredPost } from './posts.repository.ts';
import { renderMarkdown } from './render-markdown.ts';
import { uniqueSlug } from './slug.ts';
import { type PostSource, type PostWriter, writtenPostSchema } from './writer.ts';

export interface BlogServices {
  writer: PostWriter;
  /** Credits one post costs. */
  postCost: number;
  /** PUBLIC_BASE_URL: posts are linked as {publicBaseUrl}/posts/{slug}. */
  publicBaseUrl: string;
}

declare module '../../tasks/define-task.ts' {
  interface TaskServices {
    blog: BlogServices;
  }
}

export const generatePostPayload = z
  .object({
    requestId: z.string().min(1).max(256),
    accountId: z.number().int().positive(),
    to: z.string().min(1).max(160),
    replyTo: z.string().min(1).max(256).optional(),
    pageId: z.number().int().positive().optional(),
    topic: z.string().trim().min(1).max(300).optional(),
  })
  .strict()
  .refine((p) => (p.pageId === undefined) !== (p.topic === undefined), {
    error: 'exactly one of pageId and topic is required',
  });

export const postUrl = (publicBaseUrl: string, slug: string) => `${publicBaseUrl}/posts/${encodeURIComponent(slug)}`;

export function postReadyReply(post: Pick<StoredPost, 'title' | 'summary' | 'offline'>, url: string): string {
  return [
    `Your post is ready: *${post.title}*`,
    '',
    post.summary,
    '',
    url,
    ...(post.offline
      ? ['', '(Written by the offline writer from the page itself: no language model is configured.)']
      : []),
  ].join('\n');
}

/** The credits hold a post request reserves under: one per request id. */
export const postHoldRef = (requestId: string) => `post:${requestId}`;

export function postFailedReply(refunded: number): string {
  return `Sorry, I couldn't write your post this time.${refunded > 0 ? ` Your ${refunded} ${refunded === 1 ? 'credit was' : 'credits were'} returned.` : ' Nothing was charged.'} Please try again later.`;
}

/** Tells the user that a post failed and its hold was released, in the releasing transaction; once per request. */
function tellPostFailed(
  enqueue: Parameters<typeof enqueueReply>[0],
  tx: Queryable,
  p: Pick<z.output<typeof generatePostPayload>, 'requestId' | 'to' | 'replyTo' | 'accountId'>,
  refunded: number,
): Promise<void> {
  return enqueueReply(
    enqueue,
    {
      to: p.to,
      text: postFailedReply(refunded),
      key: `post-failed:${p.requestId}`,
      replyTo: p.replyTo,
      accountId: p.accountId,
    },
    { tx },
  );
}

/** How the holds sweep finds this task's run from a hold, and tells its user when it releases one. */
export const postHoldOwner: HoldOwner = {
  refPrefix: postHoldRef(''),
  task: 'blog.generate_post',
  runKey: (ref) => ref.slice(postHoldRef('').length),
  async released({ payload, refunded, enqueue, tx }) {
    const p = generatePostPayload.safeParse(payload);
    if (p.success) await tellPostFailed(enqueue, tx, p.data, refunded);
    return p.success;
  },
};

export const generatePostTask = defineTask({
  name: 'blog.generate_post',
  queue: 'blog',
  payload: generatePostPayload,
  idempotencyKey: (payload) => payload.requestId,
  // The writer's own timeout and retries (60 s, 1 retry) fit well inside.
  deadlineSeconds: 300,
  async handler(ctx) {
    const p = ctx.payload;
    const { writer, postCost, publicBaseUrl } = ctx.services.blog;
    const at = () => new Date(ctx.clock.now());
    const done = await posts.findByRequest(ctx.db, p.requestId);
    if (done) return { slug: done.slug, duplicate: true };

    let source: PostSource;
    let pageId: number | null = null;
    if (p.pageId !== undefined) {
      const page = await scrapedPages.find(ctx.db, p.pageId);
      if (!page) throw new NonRetryableError(`no scraped page ${p.pageId}`);
      pageId = page.id;
      source = {
        kind: 'page',
        url: page.finalUrl,
        title: page.title,
        text: page.text,
        byline: page.byline,
        lang: page.lang,
      };
    } else {
      source = { kind: 'topic', topic: p.topic! };
    }
    const reply = (text: string, key: string, tx?: Queryable) =>
      enqueueReply(
        ctx.enqueue,
        { to: p.to, text, key: `${key}:${p.requestId}`, replyTo: p.replyTo, accountId: p.accountId },
        tx ? { tx } : {},
      );

    if (source.kind === 'topic' && !writer.writesTopics) {
      await reply(
        `I can't write a post on a topic here: no language model is configured, so I can only write from a web page. Send me a link instead. Nothing was charged.`,
        'post-unsupported',
      );
      return { written: false, reason: 'the writer needs a page' };
    }
    const hold = postHoldRef(p.requestId);
    if ((await holdState(ctx.db, hold)) === 'released') {
      // This request failed for good before, and its credits were given back and the user told:
      // a replay must not write a post for free. The user can simply ask again.
      throw new NonRetryableError(
        `request ${p.requestId} already failed and was refunded; ask again instead of replaying`,
      );
    }
    // Failing for good: give the credits back and tell the user, in one transaction. A hold that
    // is no longer held (the sweep released it and told the user) is told nothing again.
    const giveUp = async (err: unknown): Promise<never> => {
      await inTransaction(ctx.db, async (tx) => {
        const released = await release(tx, hold, at());
        if (released.closed) await tellPostFailed(ctx.enqueue, tx, p, released.refunded);
      });
      const reason = err instanceof Error ? err.message : String(err);
      throw err instanceof NonRetryableError
        ? err
        : new NonRetryableError(`gave up after attempt ${ctx.attempt}: ${reason}`, { cause: err });
    };
    try {
      await reserve(ctx.db, { accountId: p.accountId, credits: postCost, ref: hold, at: at() });
    } catch (err) {
      if (!(err instanceof InsufficientCreditsError)) throw err;
      await reply(insufficientCreditsReply(err.balance, postCost), 'post-insufficient');
      return { insufficientCredits: true, balance: err.balance };
    }

    let content: z.output<typeof writtenPostSchema>;
    let written: Awaited<ReturnType<PostWriter['write']>>;
    try {
      written = await writer.write(source, { signal: ctx.signal });
      const checked = writtenPostSchema.safeParse(written);
      if (!checked.success)
        throw new NonRetryableError(`the written post is not valid: ${checked.error.issues[0]?.message}`);
      content = checked.data;
    } catch (err) {
      if (!(err instanceof NonRetryableError) && !ctx.lastAttempt) throw err;
      return giveUp(err);
    }

    const slug = uniqueSlug(content.title, p.requestId);
    try {
      return await inTransaction(ctx.db, async (tx) => {
        const { post } = await posts.insert(tx, {
          requestId: p.requestId,
          slug,
          accountId: p.accountId,
          pageId,
          sourceUrl: source.kind === 'page' ? source.url : null,
          topic: source.kind === 'topic' ? source.topic : null,
          title: content.title,
          summary: content.summary,
          markdown: content.markdown,
          html: renderMarkdown(content.markdown),
          lang: source.kind === 'page' ? source.lang : null,
          model: written.model,
          offline: written.offline,
          promptTokens: written.promptTokens,
          completionTokens: written.completionTokens,
          costMicros: written.costMicros,
          credits: postCost,
          createdAt: at(),
        });
        const settled = await settle(tx, hold, undefined, at());
        if (!settled.closed) {
          // The sweep released this hold (and told the user) while the model was writing: no free post.
          throw new NonRetryableError(`the credits hold ${hold} was released before the post was stored`);
        }
        const url = postUrl(publicBaseUrl, post.slug);
        await reply(postReadyReply(post, url), 'post-ready', tx);
        ctx.log.info(
          { slug: post.slug, model: written.model, tokens: written.promptTokens + written.completionTokens },
          'post published',
        );
        return { slug: post.slug, url, model: written.model, costMicros: written.costMicros };
      });
    } catch (err) {
      // The post, the settlement and the reply rolled back together. On the last attempt nothing
      // will try again, so the reservation must not stay held: release it and tell the user.
      if (!(err instanceof NonRetryableError) && !ctx.lastAttempt) throw err;
      return giveUp(err);
    }
  },
});

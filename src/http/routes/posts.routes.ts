// GET /posts/{slug}: a generated post as a readable HTML page (the link sent on WhatsApp), with a
// strict Content-Security-Policy; an HTML 404 page for a slug that names no post.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Db } from '../../db/db.ts';
import { POST_PAGE_CSP, posts, renderNotFoundPage, renderPostPage } from '../../domains/blog/index.ts';

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$/;

function html(reply: FastifyReply, status: number, body: string, cache: string) {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', POST_PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', cache)
    .send(body);
}

export function postRoutes(app: FastifyInstance, deps: { db: Db }): void {
  app.get<{ Params: { slug: string } }>('/posts/:slug', async (request, reply) => {
    const { slug } = request.params;
    const post = SLUG.test(slug) ? await posts.findBySlug(deps.db, slug) : undefined;
    if (!post) return html(reply, 404, renderNotFoundPage(), 'no-store');
    const page = renderPostPage({
      title: post.title,
      summary: post.summary,
      bodyHtml: post.html,
      sourceUrl: post.sourceUrl,
      topic: post.topic,
      createdAt: post.createdAt,
      model: post.model,
      offline: post.offline,
      lang: post.lang,
    });
    // A post never changes once published.
    return html(reply, 200, page, 'public, max-age=300');
  });
}

// The public post page and its 404: complete HTML5 documents with their CSS inline, no scripts,
// no external assets. Everything from the post is escaped here except bodyHtml, which must come
// from renderMarkdown. The route sends POST_PAGE_CSP with both pages.
import { createHash } from 'node:crypto';

export interface PostPageInput {
  title: string;
  summary: string;
  /** From renderMarkdown only: inserted as is. */
  bodyHtml: string;
  sourceUrl: string | null;
  topic: string | null;
  createdAt: Date;
  model: string;
  offline: boolean;
  /** The post's language (BCP 47) when known; the page chrome itself is English. */
  lang?: string | null;
}

const CSS = `
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #5f6368; --bg: #fdfdfc; --rule: #e3e3e0; --link: #0b57d0; --note: #f3f1ea; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e6e3; --muted: #a8a6a1; --bg: #161615; --rule: #33322f; --link: #8ab4f8; --note: #24231f; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 1.125rem/1.65 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 70ch; margin: 0 auto; padding: 2.5rem 1.25rem 4rem; }
h1, h2, h3, h4 { line-height: 1.25; margin: 2rem 0 0.75rem; }
h1 { font-size: 2.1rem; margin-top: 0; }
h2 { font-size: 1.45rem; }
h3 { font-size: 1.2rem; }
p, ul, ol, blockquote, pre, table { margin: 0 0 1.1rem; }
a { color: var(--link); text-underline-offset: 0.15em; overflow-wrap: anywhere; }
.summary { font-size: 1.25rem; color: var(--muted); margin-bottom: 0.75rem; }
.meta { font-size: 0.9rem; color: var(--muted); border-bottom: 1px solid var(--rule); padding-bottom: 1.25rem; margin-bottom: 2rem; }
.meta p { margin: 0.2rem 0; }
.note { background: var(--note); border-radius: 6px; padding: 0.6rem 0.9rem; font-size: 0.9rem; }
blockquote { margin-left: 0; padding-left: 1rem; border-left: 3px solid var(--rule); color: var(--muted); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.9em; }
code { background: var(--note); padding: 0.1em 0.3em; border-radius: 4px; }
pre { background: var(--note); padding: 0.9rem 1rem; overflow-x: auto; border-radius: 6px; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--rule); padding: 0.35rem 0.6rem; text-align: left; }
hr { border: 0; border-top: 1px solid var(--rule); margin: 2rem 0; }
footer { margin-top: 3rem; font-size: 0.85rem; color: var(--muted); }
`;

/**
 * For the post and 404 pages: nothing may load or run but the one inline stylesheet (allowed by
 * its hash, so even an injected <style> would not apply); no images at all, since renderMarkdown
 * never emits one; no base, forms or framing.
 */
export const POST_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(CSS).digest('base64')}'`,
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const dateFormat = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeZone: 'UTC' });

export function renderPostPage(post: PostPageInput): string {
  const source = post.sourceUrl ? httpUrl(post.sourceUrl) : null;
  const lang = post.lang && /^[a-z]{2,3}(-[a-z0-9]{1,8})*$/i.test(post.lang) ? post.lang : null;
  const meta: string[] = [
    `<p><time datetime="${escapeHtml(post.createdAt.toISOString())}">${escapeHtml(dateFormat.format(post.createdAt))}</time></p>`,
  ];
  if (source) {
    meta.push(
      `<p>Source: <a href="${escapeHtml(source)}" rel="nofollow noopener ugc">${escapeHtml(displayUrl(source))}</a></p>`,
    );
  } else if (post.topic) {
    meta.push(`<p>Topic: ${escapeHtml(post.topic)}</p>`);
  }
  const note = post.offline
    ? '<p class="note">Written offline: these are the source page’s own sentences, picked without a language model.</p>'
    : '';
  const credit = post.offline
    ? 'Extracted without a language model.'
    : `Written by a language model (${escapeHtml(post.model)}).`;

  return page({
    title: post.title,
    description: post.summary,
    body: `<article${lang ? ` lang="${escapeHtml(lang)}"` : ''}>
<header>
<h1>${escapeHtml(post.title)}</h1>
<p class="summary">${escapeHtml(post.summary)}</p>
<div class="meta">
${[...meta, note].filter(Boolean).join('\n')}
</div>
</header>
${post.bodyHtml}
</article>
<footer><p>${credit}</p></footer>`,
  });
}

export function renderNotFoundPage(): string {
  return page({
    title: 'Post not found',
    description: null,
    body: `<h1>Post not found</h1>
<p>There is no post at this address. It may have been deleted, or the link may be incomplete.</p>`,
  });
}

function page({ title, description, body }: { title: string; description: string | null; body: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
${description ? `<meta name="description" content="${escapeHtml(description)}">\n` : ''}<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/** The URL, normalised, when it is absolute http(s); null otherwise. */
function httpUrl(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/** The host and path, without the scheme: what a reader recognises. */
function displayUrl(url: string): string {
  const u = new URL(url);
  const shown = `${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  return shown.length > 80 ? `${shown.slice(0, 79)}…` : shown;
}

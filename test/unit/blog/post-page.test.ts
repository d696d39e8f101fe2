import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  escapeHtml,
  POST_PAGE_CSP,
  type PostPageInput,
  renderNotFoundPage,
  renderPostPage,
} from '../../../src/domains/blog/post-page.ts';
import { renderMarkdown } from '../../../src/domains/blog/render-markdown.ts';

const base: PostPageInput = {
  title: 'Baking sourdough at home',
  summary: 'A starter, patience and a hot oven.',
  bodyHtml: renderMarkdown('Intro.\n\n## Starter\n\nFeed it daily.'),
  sourceUrl: 'https://example.com/articles/sourdough',
  topic: null,
  createdAt: new Date('2026-03-05T22:30:00Z'),
  model: 'gpt-test-mini',
  offline: false,
};

test('a complete HTML5 page: doctype, lang, charset, viewport, title, description, inline CSS', () => {
  const html = renderPostPage(base);
  assert.match(html, /^<!doctype html>\n<html lang="en">/);
  assert.match(html, /<meta charset="utf-8">/);
  assert.match(html, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
  assert.match(html, /<title>Baking sourdough at home<\/title>/);
  assert.match(html, /<meta name="description" content="A starter, patience and a hot oven\.">/);
  assert.match(html, /<style>[\s\S]*prefers-color-scheme: dark[\s\S]*max-width: 70ch[\s\S]*<\/style>/);
  assert.match(html, /<h1>Baking sourdough at home<\/h1>/);
  assert.match(html, /<h2>Starter<\/h2>/);
  assert.doesNotMatch(html, /<script|<link|<img|src=/);
  assert.match(html, /<\/html>\n$/);
});

test('date, source link (host and path shown), the model credit', () => {
  const html = renderPostPage(base);
  assert.match(html, /<time datetime="2026-03-05T22:30:00\.000Z">5 March 2026<\/time>/);
  assert.match(
    html,
    /Source: <a href="https:\/\/example\.com\/articles\/sourdough" rel="nofollow noopener ugc">example\.com\/articles\/sourdough<\/a>/,
  );
  assert.match(html, /Written by a language model \(gpt-test-mini\)\./);
  assert.doesNotMatch(html, /class="note"/);
});

test('offline posts say so; topic posts show the topic instead of a source', () => {
  const html = renderPostPage({ ...base, offline: true, model: 'offline-extractive' });
  assert.match(html, /<p class="note">Written offline/);
  assert.match(html, /Extracted without a language model\./);
  const topic = renderPostPage({ ...base, sourceUrl: null, topic: 'tide <pools>' });
  assert.match(topic, /Topic: tide &lt;pools&gt;/);
  assert.doesNotMatch(topic, /Source:/);
});

test('title, summary, topic, model and source are escaped', () => {
  const evil = '"><script>alert(1)</script><img src=x onerror=alert(1)>';
  const html = renderPostPage({
    ...base,
    title: evil,
    summary: `'${evil}`,
    model: evil,
    sourceUrl: `https://example.com/?q=${evil}`,
    topic: evil,
  });
  assert.doesNotMatch(html, /<script>|<img/);
  assert.match(html, /<title>&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(html, /content="&#39;&quot;&gt;&lt;script&gt;/);
  // The href is the normalised URL: the quote is percent-encoded, nothing breaks out of it.
  assert.match(html, /href="https:\/\/example\.com\/\?q=%22%3E%3Cscript%3E/);
});

test('a source that is not http(s) gets no link', () => {
  for (const sourceUrl of ['javascript:alert(1)', 'data:text/html,x', 'ftp://example.com/x', 'not a url']) {
    const html = renderPostPage({ ...base, sourceUrl });
    assert.doesNotMatch(html, /Source:/, sourceUrl);
    assert.doesNotMatch(html, /javascript:|data:text/);
  }
});

test('the post language goes on the article when it is a plausible tag', () => {
  assert.match(renderPostPage({ ...base, lang: 'pt-BR' }), /<article lang="pt-BR">/);
  assert.match(renderPostPage({ ...base, lang: '" onload="x' }), /<article>/);
  assert.match(renderPostPage(base), /<article>/);
});

test('a post body rendered from hostile Markdown stays inert in the page', () => {
  const html = renderPostPage({
    ...base,
    bodyHtml: renderMarkdown('<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n![i](https://t.example/p.gif)'),
  });
  assert.doesNotMatch(html, /<script>|href="javascript|<img/);
});

test('404 page: complete, plain, no description', () => {
  const html = renderNotFoundPage();
  assert.match(html, /^<!doctype html>/);
  assert.match(html, /<title>Post not found<\/title>/);
  assert.match(html, /<h1>Post not found<\/h1>/);
  assert.doesNotMatch(html, /name="description"/);
});

test('CSP: nothing but the page stylesheet, by its hash', () => {
  const style = /<style>([\s\S]*?)<\/style>/.exec(renderNotFoundPage())?.[1] ?? '';
  const hash = createHash('sha256').update(style).digest('base64');
  assert.equal(
    POST_PAGE_CSP,
    `default-src 'none'; style-src 'sha256-${hash}'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  );
  assert.equal(/<style>([\s\S]*?)<\/style>/.exec(renderPostPage(base))?.[1], style);
});

test('escapeHtml', () => {
  assert.equal(
    escapeHtml(`<a href="x" title='y'>&amp;</a>`),
    '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;',
  );
  assert.equal(escapeHtml('plain'), 'plain');
});

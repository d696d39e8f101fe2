import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSafeLinkUrl, renderMarkdown } from '../../../src/domains/blog/render-markdown.ts';

/**
 * No executable HTML left: every real tag (text `<` is escaped as &lt;) is an expected element,
 * no attribute outside quoted values is an event handler or a src, every href is http(s)/mailto.
 */
function assertInert(html: string): void {
  const allowed = /^\/?(p|a|h[2-6]|ul|ol|li|em|strong|code|pre|blockquote|hr|br|table|thead|tbody|tr|th|td|s)$/;
  for (const [tag] of html.matchAll(/<[^>]*>/g)) {
    const name = /^<(\/?[a-z0-9]+)/i.exec(tag)?.[1] ?? tag;
    assert.match(name, allowed, html);
    const outsideValues = tag.replace(/"[^"]*"/g, '""');
    assert.doesNotMatch(outsideValues, /\s(on\w+|src|style|formaction)\s*=/i, html);
  }
  for (const [, href] of html.matchAll(/\shref="([^"]*)"/g)) {
    assert.match(href ?? '', /^(https?:|mailto:)/, html);
  }
}

test('ordinary Markdown: paragraphs, h2, lists, emphasis, code, tables', () => {
  const html = renderMarkdown(
    'Intro *here*.\n\n## Part\n\n- one\n- **two**\n\n`code`\n\n| a | b |\n|---|---|\n| 1 | 2 |',
  );
  assert.match(html, /<p>Intro <em>here<\/em>\.<\/p>/);
  assert.match(html, /<h2>Part<\/h2>/);
  assert.match(html, /<li><strong>two<\/strong><\/li>/);
  assert.match(html, /<code>code<\/code>/);
  assert.match(html, /<table>/);
});

test('h1 in the body becomes h2 (the page title is the only h1)', () => {
  assert.equal(renderMarkdown('# Big\n\n### Small').trim(), '<h2>Big</h2>\n<h3>Small</h3>');
});

test('raw HTML is escaped, never passed through', () => {
  for (const payload of [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '<a href="javascript:alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<svg onload=alert(1)>',
    '<style>body{display:none}</style>',
    'text <b onmouseover="alert(1)">bold</b>',
    '<div>\n<script>alert(1)</script>\n</div>',
  ]) {
    const html = renderMarkdown(payload);
    assertInert(html);
    assert.match(html, /&lt;/, payload);
  }
  assert.equal(renderMarkdown('<script>alert(1)</script>').trim(), '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
});

test('javascript:, vbscript:, data: and file: links are not links', () => {
  for (const payload of [
    '[x](javascript:alert(1))',
    '[x](JaVaScRiPt:alert(1))',
    '[x]( javascript:alert(1))',
    '[x](javascript&colon;alert(1))',
    '[x](&#106;avascript:alert(1))',
    '[x](&#x6A;avascript&#x3A;alert(1))',
    '[x](java&#x09;script:alert(1))',
    '[x](<javascript:alert(1)>)',
    '[x](vbscript:msgbox(1))',
    '[x](data:text/html,<script>alert(1)</script>)',
    '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
    '[x](file:///etc/passwd)',
    '<javascript:alert(1)>',
    '[x][r]\n\n[r]: javascript:alert(1)',
    'javascript:alert(1)',
  ]) {
    const html = renderMarkdown(payload);
    assertInert(html);
    assert.doesNotMatch(html, /<a\s/, payload);
  }
});

test('relative and protocol-relative links are not links either (a post links out, absolutely)', () => {
  for (const payload of ['[x](/admin)', '[x](#top)', '[x](//evil.example/x)', '[x](ftp://files.example/a)']) {
    assert.doesNotMatch(renderMarkdown(payload), /<a\s/, payload);
  }
});

test('allowed links get rel="nofollow noopener ugc"; titles cannot inject attributes', () => {
  assert.equal(
    renderMarkdown('[site](https://example.com/a?b=1&c=2)').trim(),
    '<p><a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener ugc">site</a></p>',
  );
  const titled = renderMarkdown('[x](https://a.example "t\\" onmouseover=\\"alert(1)")');
  assertInert(titled);
  assert.match(titled, /title="t&quot; onmouseover=&quot;alert\(1\)"/);
  const broken = renderMarkdown('[x](https://a.example "a\\"><script>alert(1)</script>")');
  assertInert(broken);
  const quoted = renderMarkdown('[x](https://ok.example/"onmouseover="alert(1))');
  assertInert(quoted);
  assert.match(quoted, /href="https:\/\/ok\.example\/%22onmouseover=%22alert\(1\)"/);
  assert.match(
    renderMarkdown('[mail](mailto:a@example.com)'),
    /href="mailto:a@example\.com" rel="nofollow noopener ugc"/,
  );
});

test('autolinks and linkified URLs are filtered and marked the same way', () => {
  const html = renderMarkdown('See https://example.com/x and <https://example.org> and ask me@example.com.');
  assert.match(html, /<a href="https:\/\/example\.com\/x" rel="nofollow noopener ugc">/);
  assert.match(html, /<a href="https:\/\/example\.org" rel="nofollow noopener ugc">/);
  assert.match(html, /<a href="mailto:me@example\.com" rel="nofollow noopener ugc">/);
});

test('images are never loaded: a safe one becomes a link labelled with its alt, an unsafe one text', () => {
  assert.equal(
    renderMarkdown('![a "cat" <3](https://img.example/cat.png "t")').trim(),
    '<p><a href="https://img.example/cat.png" rel="nofollow noopener ugc">Image: a &quot;cat&quot; &lt;3</a></p>',
  );
  for (const payload of [
    '![x](javascript:alert(1))',
    '![x](data:image/png;base64,AAAA)',
    '![x](data:image/svg+xml,<svg onload=alert(1)>)',
    '![x" onerror="alert(1)](https://img.example/a.png)',
  ]) {
    assertInert(renderMarkdown(payload));
  }
});

test('HTML in code spans and fenced blocks stays text; the info string cannot break out', () => {
  assert.equal(
    renderMarkdown('`<script>alert(1)</script>`').trim(),
    '<p><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></p>',
  );
  const fenced = renderMarkdown('```html"><script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```');
  assertInert(fenced);
  assert.match(fenced, /&lt;img src=x onerror=alert\(1\)&gt;/);
});

test('isSafeLinkUrl', () => {
  assert.equal(isSafeLinkUrl('https://example.com'), true);
  assert.equal(isSafeLinkUrl('http://example.com/a b'), false);
  assert.equal(isSafeLinkUrl('mailto:a@b.c'), true);
  assert.equal(isSafeLinkUrl('https://'), false);
  assert.equal(isSafeLinkUrl('javascript:alert(1)'), false);
  assert.equal(isSafeLinkUrl('java\tscript:alert(1)'), false);
  assert.equal(isSafeLinkUrl('/relative'), false);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createOfflineWriter,
  OFFLINE_MARKER,
  OFFLINE_MODEL,
  OFFLINE_TOPIC_MARKER,
} from '../../../src/domains/blog/offline-writer.ts';
import { renderMarkdown } from '../../../src/domains/blog/render-markdown.ts';
import { type PostSource, type WrittenPost, writtenPostSchema } from '../../../src/domains/blog/writer.ts';

const ARTICLE = `Sourdough bread is made with a live culture of wild yeast and lactic acid bacteria instead of commercial yeast.
The culture, called a starter, is a simple mix of flour and water that ferments over several days.

Making a starter

To make a starter, mix equal weights of whole wheat flour and water in a clean jar and leave it at room temperature.
Every day, discard half of the starter and feed it with fresh flour and water. After five to seven days the starter should double in size within a few hours of feeding. A healthy starter smells pleasantly sour, a little like yoghurt.

Subscribe to our newsletter for more recipes!

Mixing and shaping the dough

Mix the active starter with flour, water and salt, then let the dough rest for thirty minutes. During bulk fermentation, stretch and fold the dough every half hour to build strength. Shape the dough into a tight ball and let it proof in a floured basket overnight in the fridge.

Baking

Bake the bread in a preheated Dutch oven at a high temperature of about 250 °C. Keep the lid on for the first twenty minutes so the steam helps the crust expand. Remove the lid and bake until the crust is deep brown, then let the loaf cool for an hour before slicing.
Cutting it too early makes the crumb gummy, because the starch is still setting.`;

const page: PostSource = {
  kind: 'page',
  url: 'https://example.com/sourdough',
  title: '  How to bake   sourdough bread at home ',
  text: ARTICLE,
  byline: 'Ada Baker',
  lang: 'en',
};

const writer = createOfflineWriter();

function assertValid(post: WrittenPost): void {
  const parsed = writtenPostSchema.safeParse(post);
  assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  assert.equal(post.model, OFFLINE_MODEL);
  assert.equal(post.offline, true);
  assert.equal(post.promptTokens, 0);
  assert.equal(post.completionTokens, 0);
  assert.equal(post.costMicros, 0);
}

test('a page: its title, its opening as the summary, its own sentences under its own headings', async () => {
  const post = await writer.write(page, {});
  assertValid(post);
  assert.equal(writer.name, 'offline');
  assert.equal(post.title, 'How to bake sourdough bread at home');
  assert.equal(
    post.summary,
    'Sourdough bread is made with a live culture of wild yeast and lactic acid bacteria instead of commercial yeast. The culture, called a starter, is a simple mix of flour and water that ferments over several days.',
  );
  const lines = post.markdown.split('\n');
  assert.equal(lines[0], OFFLINE_MARKER);
  assert.equal(lines.at(-1), 'Source: <https://example.com/sourdough> (by Ada Baker)');
  assert.match(post.markdown, /^## Making a starter$/m);
  assert.match(post.markdown, /^## Baking$/m);
  assert.doesNotMatch(post.markdown, /newsletter/i, 'boilerplate is left out');
  assert.doesNotMatch(post.markdown, /^Sourdough bread is made/m, 'the summary is not repeated in the body');
  // Every body sentence is the page's own, in the page's order.
  const body = lines.filter(
    (l) => l && !l.startsWith('>') && !l.startsWith('#') && l !== '---' && !l.startsWith('Source:'),
  );
  const sentences = body.flatMap((l) => l.split(/(?<=\.) /));
  let last = -1;
  for (const s of sentences) {
    const at = ARTICLE.replace(/\n/g, ' ').indexOf(s);
    assert.ok(at > last, `in order and verbatim: ${s}`);
    last = at;
  }
  assert.ok(sentences.length >= 5);
});

test('the same input gives the identical post', async () => {
  const a = await writer.write(page, {});
  const b = await createOfflineWriter().write(structuredClone(page), {});
  assert.deepEqual(a, b);
});

test('renders to readable HTML: a blockquote marker, h2 sections, the source link, no stray backslashes', async () => {
  const html = renderMarkdown((await writer.write(page, {})).markdown);
  assert.match(html, /^<blockquote>\n<p>Written by the offline writer/);
  assert.match(html, /<h2>Making a starter<\/h2>/);
  assert.match(html, /<a href="https:\/\/example\.com\/sourdough" rel="nofollow noopener ugc">/);
  assert.doesNotMatch(html, /\\/);
});

test('page text is quoted as text: Markdown and HTML in it do nothing', async () => {
  const text = [
    '# Not a heading from the page, and *not emphasis* either, because it is only text here.',
    '',
    '1. This line would start an ordered list if it were not escaped by the writer.',
    '',
    'A sentence with <script>alert(1)</script> and [a link](javascript:alert(1)) inside it.',
    '',
    'Ampersands &amp; entities such as &lt;b&gt; must come out exactly as they were written.',
  ].join('\n');
  const post = await writer.write({ ...page, text }, {});
  assertValid(post);
  const html = renderMarkdown(post.markdown);
  assert.doesNotMatch(html, /<script>|<em>|<ol>|<h1>|href="javascript/);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(html, /Ampersands &amp;amp; entities such as &amp;lt;b&amp;gt;/);
});

test('another language: sentences split by its rules, still well-formed', async () => {
  const text =
    'Die Stadt liegt am Ufer eines großen Sees und ist für ihre alten Brücken bekannt. ' +
    'Viele Besucher kommen im Sommer, um mit dem Boot über den See zu fahren. ' +
    'Im Winter ist es ruhiger, und die Cafés in der Altstadt sind dann besonders gemütlich. ' +
    'Die meisten Sehenswürdigkeiten erreicht man bequem zu Fuß vom Bahnhof aus.';
  const post = await writer.write(
    { kind: 'page', url: 'https://example.de/stadt', title: 'Eine Stadt am See', text, byline: null, lang: 'de' },
    {},
  );
  assertValid(post);
  assert.match(post.summary, /^Die Stadt liegt am Ufer eines großen Sees/);
  assert.match(post.markdown, /Die meisten Sehenswürdigkeiten/);
  assert.match(post.markdown, /Source: <https:\/\/example\.de\/stadt>$/);
});

test('a page with nothing quotable, an empty title or an invalid lang still gives a valid post', async () => {
  for (const source of [
    { ...page, text: 'Home | About | Contact\nMenu\nLogin', title: '' },
    { ...page, text: '', title: 'x'.repeat(500), lang: 'not a language tag!' },
    { ...page, text: '€€€ ### 123 456 ### €€€. '.repeat(50), url: 'not a url', byline: null },
  ] satisfies PostSource[]) {
    const post = await writer.write(source, {});
    assertValid(post);
    assert.ok(post.markdown.startsWith(OFFLINE_MARKER));
  }
  const untitled = await writer.write({ ...page, text: '', title: '' }, {});
  assert.equal(untitled.title, 'example.com');
  assert.match(untitled.markdown, /nothing to quote/);
});

test('a long page: bounded summary and body', async () => {
  const paragraph = (i: number) =>
    `Paragraph ${i} explains another detail about fermentation, flour and water in a complete sentence. It adds a second sentence about the crust and the crumb of bread number ${i}.`;
  const text = Array.from({ length: 400 }, (_, i) => paragraph(i)).join('\n\n');
  const post = await writer.write({ ...page, text }, {});
  assertValid(post);
  assert.ok(post.markdown.length < 6_000, String(post.markdown.length));
});

test('a topic: an honest placeholder, well-formed and marked offline', async () => {
  const post = await writer.write({ kind: 'topic', topic: '  the history of *tide* pools ' }, {});
  assertValid(post);
  assert.equal(post.title, 'the history of *tide* pools');
  assert.match(post.summary, /no language model is configured/);
  assert.equal(post.markdown.split('\n')[0], OFFLINE_TOPIC_MARKER);
  assert.match(post.markdown, /\*\*the history of \\\*tide\\\* pools\*\*/);
  assert.deepEqual(post, await writer.write({ kind: 'topic', topic: '  the history of *tide* pools ' }, {}));
  assertValid(await writer.write({ kind: 'topic', topic: '' }, {}));
  assertValid(await writer.write({ kind: 'topic', topic: 'word '.repeat(300) }, {}));
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExtractionError, extractArticle } from '../../../src/domains/scraper/extract.ts';

const para = (n: number) =>
  `Paragraph ${n} carries the story forward with enough ordinary words to look like real prose, ` +
  'the kind a reader view keeps while it drops the menus, the share buttons and the footer links.';

const article = `<!doctype html>
<html lang="en-GB">
<head>
  <title>Tide tables go digital | Harbour Gazette</title>
  <meta name="author" content="Priya Sandhu">
  <meta name="description" content="The harbour office retires its printed tide tables.">
  <meta property="og:site_name" content="Harbour Gazette">
  <script>var tracking = 'should never appear';</script>
  <style>.x { color: red }</style>
</head>
<body>
  <nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
  <article>
    <h1>Tide tables go digital</h1>
    <p>${para(1)}</p><p>${para(2)}</p>
    <p>A line<br>broken in two, with&nbsp;a non-breaking space and     extra    spaces.</p>
    <ul><li>First point</li><li>Second point</li></ul>
    <ol><li>Step one</li><li>Step two</li></ol>
    <pre>indent
    kept</pre>
    <p>${para(3)}</p>
  </article>
  <footer>© 2026 Harbour Gazette · <a href="/privacy">Privacy</a></footer>
</body>
</html>`;

test('extracts the article: metadata, paragraphs with blank lines between, no boilerplate', () => {
  const a = extractArticle(article, 'https://gazette.test/news/tides');
  assert.equal(a.title, 'Tide tables go digital');
  assert.equal(a.byline, 'Priya Sandhu');
  assert.equal(a.excerpt, 'The harbour office retires its printed tide tables.');
  assert.equal(a.lang, 'en-GB');
  assert.equal(a.siteName, 'Harbour Gazette');
  assert.equal(
    a.text,
    [
      para(1),
      para(2),
      'A line\nbroken in two, with a non-breaking space and extra spaces.',
      '- First point\n- Second point',
      '1. Step one\n2. Step two',
      'indent\n    kept',
      para(3),
    ].join('\n\n'),
  );
  assert.doesNotMatch(a.text, /Home|Privacy|tracking|color/);
  assert.equal(a.wordCount, a.text.match(/[\p{L}\p{N}]+/gu)!.length);
});

test('title: og:title first, else the one <h1> that <title> repeats, else Readability’s, else <title>', () => {
  const body = `<article><p>${para(1)}</p><p>${para(2)}</p></article>`;
  const og = `<html><head><title>X | Site</title><meta property="og:title" content="From OG"></head><body><h1>X</h1>${body}</body></html>`;
  assert.equal(extractArticle(og, 'https://s.test/').title, 'From OG');
  // A colon in the headline fools Readability's title heuristic; the <h1> does not.
  const colon = `<html><head><title>Lyon : la presqu’île fermée – Le Courrier</title></head><body><h1>Lyon : la presqu’île fermée</h1>${body}</body></html>`;
  assert.equal(extractArticle(colon, 'https://s.test/').title, 'Lyon : la presqu’île fermée');
  const titleOnly = `<html><head><title>Only the title</title></head><body>${body}</body></html>`;
  assert.equal(extractArticle(titleOnly, 'https://s.test/').title, 'Only the title');
  const nothing = `<html><body><p>First words of the page.</p></body></html>`;
  assert.equal(extractArticle(nothing, 'https://s.test/').title, 'First words of the page.');
});

test('a fragment without <html> is parsed as a body', () => {
  const a = extractArticle('<p>hi</p><p>there</p>', 'https://s.test/');
  assert.equal(a.text, 'hi\n\nthere');
  assert.equal(a.wordCount, 2);
});

test('two <br> in a row make a paragraph break (div-and-br pages)', () => {
  const a = extractArticle(
    '<html><body><div>Closed today<br><br>Back on Monday at nine.<br>The team</div></body></html>',
    'https://s.test/',
  );
  assert.equal(a.text, 'Closed today\n\nBack on Monday at nine.\nThe team');
});

test('the fallback (Readability skipped on a too-big page) takes the body minus navigation, header, footer, aside, form', () => {
  const page = `<html lang="de"><head><title>Seite</title><meta property="og:title" content="Die Seite"></head><body>
    <header>Kopfzeile</header><nav><a href="/">Start</a></nav>
    <div><p>Erster Absatz.</p><p>Zweiter Absatz.</p></div>
    <aside>Werbung</aside><form><label>Suche</label></form><footer>Impressum</footer>
    <script>alert(1)</script></body></html>`;
  const a = extractArticle(page, 'https://s.test/', { maxElements: 5 });
  assert.equal(a.text, 'Erster Absatz.\n\nZweiter Absatz.');
  assert.equal(a.title, 'Die Seite');
  assert.equal(a.lang, 'de');
  assert.equal(a.byline, null);
  assert.equal(a.siteName, null);
});

test('word count works for text without spaces (Japanese)', () => {
  const a = extractArticle(
    '<html lang="ja"><body><p>日本語のページです。東京は晴れです。</p></body></html>',
    'https://s.test/',
  );
  assert.equal(a.lang, 'ja');
  assert.ok(a.wordCount >= 5, `counted ${a.wordCount}`);
});

test('no readable text: ExtractionError, with a message for the user', () => {
  for (const html of [
    '',
    '<html><body></body></html>',
    '<html><body><img src="cat.jpg"></body></html>',
    '<html><head><script>render()</script></head><body><div id="root"></div><noscript>Enable JavaScript</noscript></body></html>',
  ]) {
    assert.throws(
      () => extractArticle(html, 'https://s.test/app'),
      (err: unknown) =>
        err instanceof ExtractionError &&
        err.url === 'https://s.test/app' &&
        err.userMessage === "I couldn't find any text to read on that page.",
      JSON.stringify(html),
    );
  }
});

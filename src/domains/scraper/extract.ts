// Turns a fetched page into the article's plain text (title, byline, paragraphs) with Mozilla's
// Readability (Firefox's reader view) over linkedom (lighter and faster than jsdom for this, and
// far better than a tag strip). The text keeps paragraph breaks, for the LLM that writes from it.
// Both load on the first page, not at start.
import type { Readability as ReadabilityClass } from '@mozilla/readability';
import { pgText } from '../../db/pg-text.ts';
import { lazyRequire } from '../../lazy-module.ts';

const readability = lazyRequire<typeof import('@mozilla/readability')>('@mozilla/readability');
const linkedom = lazyRequire<typeof import('linkedom')>('linkedom');

export interface ExtractedArticle {
  title: string;
  byline: string | null;
  /** Paragraphs separated by a blank line; list items and table rows one per line. */
  text: string;
  excerpt: string | null;
  lang: string | null;
  siteName: string | null;
  /** Words as Intl.Segmenter counts them (so Japanese or Chinese text is counted too). */
  wordCount: number;
}

/** The page has no readable text (an empty shell, a script-only app, an image): not worth a retry. */
export class ExtractionError extends Error {
  readonly url: string;
  readonly userMessage = "I couldn't find any text to read on that page.";
  constructor(url: string, message = 'no readable text on the page') {
    super(message);
    this.name = 'ExtractionError';
    this.url = url;
  }
}

// Minimal DOM shapes: linkedom's nodes, without pulling the DOM lib into the whole project.
interface DomNode {
  nodeType: number;
  nodeName: string;
  textContent: string | null;
  childNodes: ArrayLike<DomNode>;
}
interface DomElement extends DomNode {
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
  remove(): void;
}
interface DomDocument {
  documentElement: DomElement | null;
  body: DomElement | null;
  title: string;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}

// biome-ignore format: a list reads better packed
const BLOCKS = new Set([
  'ADDRESS', 'ARTICLE', 'ASIDE', 'BLOCKQUOTE', 'BODY', 'CAPTION', 'DD', 'DETAILS', 'DIV', 'DL', 'DT', 'FIELDSET',
  'FIGCAPTION', 'FIGURE', 'FOOTER', 'FORM', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'HEADER', 'HR', 'LI', 'MAIN', 'NAV',
  'OL', 'P', 'PRE', 'SECTION', 'SUMMARY', 'TABLE', 'TBODY', 'TFOOT', 'THEAD', 'TR', 'UL',
]);
/** Blocks whose consecutive siblings are lines of one paragraph rather than paragraphs. */
const LINES = new Set(['LI', 'TR', 'DT', 'DD']);
const SKIP = new Set([
  'SCRIPT',
  'STYLE',
  'NOSCRIPT',
  'TEMPLATE',
  'SVG',
  'CANVAS',
  'IFRAME',
  'OBJECT',
  'HEAD',
  'BUTTON',
]);
/** Removed before the no-article fallback takes the body's text. */
const BOILERPLATE =
  'script, style, noscript, template, nav, header, footer, aside, form, iframe, svg, [role=navigation], [aria-hidden=true]';

export interface ExtractOptions {
  /**
   * Pages with more elements skip Readability (whose cost grows with the tree) for the plain
   * fallback below (Default: 100_000; a 2 MB page of ordinary markup has far fewer).
   */
  maxElements?: number;
}

/**
 * The article in `html` (fetched from `url`). Readability finds the main content; when it finds
 * none, or the page is too big for it, the body's text minus navigation, headers, footers, asides
 * and forms is used. Throws ExtractionError when there is no text at all: callers decide what to
 * tell the user.
 */
export function extractArticle(html: string, url: string, options: ExtractOptions = {}): ExtractedArticle {
  const document = parse(html);
  // Readability mutates the document, so read the page's own metadata first.
  const meta = pageMetadata(document);
  let article: ReturnType<ReadabilityClass<DomElement>['parse']> = null;
  // Counted here: Readability's own maxElemsToParse relies on getElementsByTagName('*'), which
  // linkedom answers with nothing.
  if (document.querySelectorAll('*').length <= (options.maxElements ?? 100_000)) {
    try {
      article = new (readability().Readability)<DomElement>(document as never, {
        charThreshold: 500,
        serializer: (node) => node as unknown as DomElement,
      }).parse();
    } catch {
      article = null; // a page Readability chokes on still gets the fallback below
    }
  }

  let text = article?.content ? toText(article.content) : '';
  if (!text) {
    const fallback = parse(html);
    for (const el of Array.from(fallback.querySelectorAll(BOILERPLATE))) el.remove();
    text = fallback.body ? toText(fallback.body) : '';
  }
  if (!text) throw new ExtractionError(url);

  return {
    title: meta.title || clean(article?.title) || meta.documentTitle || firstLine(text),
    byline: clean(article?.byline) || meta.byline,
    text,
    excerpt: clean(article?.excerpt) || meta.excerpt,
    lang: clean(article?.lang) || meta.lang,
    siteName: clean(article?.siteName) || meta.siteName,
    wordCount: countWords(text),
  };
}

function parse(html: string): DomDocument {
  // linkedom builds a broken tree from a fragment without <html>, so give it one. An <html> that is
  // not the root (inside a comment or a <template>) leaves no <html> root, or none at all, where
  // linkedom's document.body throws: such a page is wrapped too.
  if (/<html[\s>]/i.test(html)) {
    const document = linkedom().parseHTML(html).document as unknown as DomDocument;
    if (document.documentElement?.nodeName === 'HTML') return document;
  }
  return linkedom().parseHTML(`<!doctype html><html><head></head><body>${html}</body></html>`)
    .document as unknown as DomDocument;
}

function pageMetadata(document: DomDocument) {
  const metaContent = (...selectors: string[]) => {
    for (const selector of selectors) {
      const value = clean(document.querySelector(selector)?.getAttribute('content'));
      if (value) return value;
    }
    return null;
  };
  // The headline: og:title, else the page's one <h1> when <title> repeats it (so a site name or
  // a colon in the headline cannot fool Readability's title heuristics), else Readability's pick.
  const documentTitle = clean(document.title);
  const h1s = Array.from(document.querySelectorAll('h1'));
  const h1 = h1s.length === 1 ? clean(h1s[0]!.textContent).replace(/[\s¶#§]+$/u, '') : '';
  return {
    title:
      metaContent('meta[property="og:title"]', 'meta[name="twitter:title"]') ||
      (h1 && documentTitle.includes(h1) ? h1 : ''),
    documentTitle: documentTitle || clean(h1s[0]?.textContent) || '',
    byline: metaContent('meta[name="author"]', 'meta[property="article:author"]'),
    excerpt: metaContent('meta[name="description"]', 'meta[property="og:description"]'),
    lang: clean(document.documentElement?.getAttribute('lang')) || null,
    siteName: metaContent('meta[property="og:site_name"]', 'meta[name="application-name"]'),
  };
}

/**
 * The element's text with paragraph structure: whitespace collapsed inside a block, a blank line
 * between blocks, one line per list item ("- " or "1. ") or table row, `<br>` as a line break (two
 * in a row as a paragraph break), `<pre>` as written.
 */
function toText(root: DomNode): string {
  const paragraphs: string[] = [];
  let current = '';
  let lines: string[] = [];
  let brokeLine = false;

  const endLine = () => {
    const line = current.replace(/\s+/g, ' ').trim();
    if (line) lines.push(line);
    current = '';
  };
  const endParagraph = () => {
    endLine();
    if (lines.length > 0) paragraphs.push(lines.join('\n'));
    lines = [];
  };

  const walk = (node: DomNode, listMarker: string) => {
    if (node.nodeType === 3) {
      const value = normaliseChars(node.textContent ?? '');
      if (value.trim()) brokeLine = false;
      current += value;
      return;
    }
    if (node.nodeType !== 1) return;
    const name = node.nodeName.toUpperCase();
    if (SKIP.has(name)) return;
    if (name === 'BR') {
      if (brokeLine && !current.trim()) endParagraph();
      else endLine();
      brokeLine = true;
      return;
    }
    if (name === 'PRE') {
      endParagraph();
      const code = normaliseChars(node.textContent ?? '').replace(/^\s*\n|\s+$/g, '');
      if (code.trim()) paragraphs.push(code);
      return;
    }
    const block = BLOCKS.has(name);
    if (block) LINES.has(name) ? endLine() : endParagraph();
    if (name === 'TD' || name === 'TH') current += ' ';
    if (name === 'LI') current += listMarker;
    let item = 0;
    for (const child of Array.from(node.childNodes)) {
      const isItem = child.nodeType === 1 && child.nodeName.toUpperCase() === 'LI';
      if (isItem) item++;
      walk(child, name === 'OL' ? `${item}. ` : name === 'UL' || name === 'MENU' ? '- ' : listMarker);
    }
    if (block) LINES.has(name) ? endLine() : endParagraph();
  };

  walk(root, '- ');
  endParagraph();
  return paragraphs.join('\n\n');
}

// U+0000 goes too: a page may carry NUL bytes (a broken CMS, a binary fragment), which the HTML
// parser keeps as text and PostgreSQL refuses in a text column.
function normaliseChars(text: string): string {
  return pgText(text)
    .replace(/[\u00a0\u2007\u202f]/g, ' ')
    .replace(/[\u200b-\u200d\u2060\ufeff\u00ad]/g, '');
}

function clean(value: string | null | undefined): string {
  return pgText(value ?? '')
    .replace(/\s+/g, ' ')
    .trim();
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 120 ? `${line.slice(0, 117)}…` : line;
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'word' });

function countWords(text: string): number {
  let count = 0;
  for (const segment of segmenter.segment(text)) if (segment.isWordLike) count++;
  return count;
}

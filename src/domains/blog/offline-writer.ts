// The offline writer: a post without a language model. From a page it keeps the page's own best
// sentences (scored by how often their words occur in the page, by position and by overlap with
// the title), in their original order, under the page's own headings, marked as extracted and
// linked to the source. From a bare topic there is nothing to quote, so it writes an honest
// placeholder. Same input, same output: no clock, no randomness.
import type { PostSource, PostWriter, WrittenPost } from './writer.ts';
import { POST_LIMITS } from './writer.ts';

export const OFFLINE_MODEL = 'offline-extractive';
/** The first line of every offline post from a page. */
export const OFFLINE_MARKER =
  "> Written by the offline writer from the page's own sentences; no language model was used.";
/** The first line of the placeholder written for a topic. */
export const OFFLINE_TOPIC_MARKER = '> Written by the offline writer; no language model was used.';

/** Pages are read up to this many characters: enough for any article, bounded for the CPU. */
const MAX_TEXT_CHARS = 60_000;
/** A short page is kept whole up to this many sentences; a longer one gives half, within the maximum. */
const KEEP_ALL_UP_TO = 8;
/** The body keeps at most this many sentences and roughly this many characters. */
const MAX_SENTENCES = 14;
const BODY_CHAR_BUDGET = 4_000;

export function createOfflineWriter(): PostWriter {
  return {
    name: 'offline',
    writesTopics: false,
    async write(source) {
      return source.kind === 'page' ? writeFromPage(source) : writeFromTopic(source.topic);
    },
  };
}

type Page = Extract<PostSource, { kind: 'page' }>;

interface Sentence {
  text: string;
  index: number;
  paragraph: number;
  heading: string | null;
}

function writeFromPage(page: Page): WrittenPost {
  const title = clipText(collapse(page.title) || hostOf(page.url) || 'Untitled page', POST_LIMITS.titleMax);
  const blocks = readBlocks(page.text.slice(0, MAX_TEXT_CHARS));
  const sentences = goodSentences(blocks, page.lang);

  const summarySentences = pickSummary(sentences);
  const summary = summarySentences.length
    ? clipText(summarySentences.map((s) => s.text).join(' '), POST_LIMITS.summaryMax)
    : 'The offline writer found no sentences to quote on this page.';

  let chosen = pickSentences(sentences, title);
  const withoutSummary = chosen.filter((s) => !summarySentences.includes(s));
  if (withoutSummary.length >= 2) chosen = withoutSummary;

  const parts = [OFFLINE_MARKER, ''];
  if (chosen.length === 0) {
    parts.push(
      'The page has no sentences that stand on their own (it may be mostly links, lists or media), so there is nothing to quote here. See the source below.',
      '',
    );
  } else {
    parts.push(...bodyMarkdown(chosen), '');
  }
  parts.push(
    '---',
    '',
    `Source: ${markdownLink(page.url)}${page.byline ? ` (by ${escapeMarkdown(collapse(page.byline))})` : ''}`,
  );

  return {
    title,
    summary,
    markdown: clipText(parts.join('\n'), POST_LIMITS.markdownMax),
    model: OFFLINE_MODEL,
    promptTokens: 0,
    completionTokens: 0,
    costMicros: 0,
    offline: true,
  };
}

function writeFromTopic(topic: string): WrittenPost {
  const name = collapse(topic);
  const title = clipText(name || 'Untitled topic', POST_LIMITS.titleMax);
  const short = clipText(name || 'this topic', 150);
  return {
    title,
    summary: `No post was written about “${short}”: no language model is configured, and a topic alone gives the offline writer nothing to quote.`,
    markdown: [
      OFFLINE_TOPIC_MARKER,
      '',
      `This is a placeholder, not a post. You asked for a post about **${escapeMarkdown(short)}**, but this service is running without a language model, and a topic on its own gives the offline writer no sentences to work from.`,
      '',
      "Send a link to a page about the topic instead: the offline writer can build a post from that page's own sentences. Once a language model is configured, topics get a full post.",
    ].join('\n'),
    model: OFFLINE_MODEL,
    promptTokens: 0,
    completionTokens: 0,
    costMicros: 0,
    offline: true,
  };
}

// --- reading the page ------------------------------------------------------------------------

type Block = { kind: 'heading'; text: string } | { kind: 'paragraph'; text: string };

/**
 * Paragraphs and headings from extracted text. With blank lines, a blank-line chunk is a
 * paragraph (its lines are the source HTML's wrapping) unless it is a single short line without
 * closing punctuation: a heading. Without blank lines, every line is a block.
 */
function readBlocks(text: string): Block[] {
  const normalised = text.replace(/\r\n?/g, '\n').replace(/[ \t\f\v\u00a0]+/g, ' ');
  const hasBlankLines = /\n\s*\n/.test(normalised);
  const chunks = hasBlankLines ? normalised.split(/\n\s*\n/) : normalised.split('\n');
  const blocks: Block[] = [];
  for (const chunk of chunks) {
    const lines = chunk
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    if (lines.length === 0) continue;
    if (lines.length === 1 && looksLikeHeading(lines[0]!)) {
      blocks.push({ kind: 'heading', text: lines[0]! });
      continue;
    }
    let rest = lines;
    if (lines.length > 1 && looksLikeHeading(lines[0]!) && lines[1]!.length > 80) {
      blocks.push({ kind: 'heading', text: lines[0]! });
      rest = lines.slice(1);
    }
    blocks.push({ kind: 'paragraph', text: rest.join(' ') });
  }
  return blocks;
}

function looksLikeHeading(line: string): boolean {
  return (
    line.length >= 3 &&
    line.length <= 80 &&
    line.split(' ').length <= 12 &&
    /^[\p{Lu}\p{Lo}\p{N}]/u.test(line) &&
    !/[.!?,;:…。！？"”’)]$/u.test(line)
  );
}

const BOILERPLATE =
  /cookie|newsletter|subscribe|all rights reserved|©|sign up|log ?in to|privacy policy|terms of (use|service)/i;
const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u;

function goodSentences(blocks: Block[], lang: string | null): Sentence[] {
  const segmenter = sentenceSegmenter(lang);
  const seen = new Set<string>();
  const out: Sentence[] = [];
  let heading: string | null = null;
  let paragraph = 0;
  for (const block of blocks) {
    if (block.kind === 'heading') {
      heading = block.text;
      continue;
    }
    paragraph += 1;
    for (const { segment } of segmenter.segment(block.text)) {
      const text = segment.trim();
      if (!isGoodSentence(text)) continue;
      const key = text.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ text, index: out.length, paragraph, heading });
    }
  }
  return out;
}

function sentenceSegmenter(lang: string | null): Intl.Segmenter {
  try {
    return new Intl.Segmenter(lang ?? 'en', { granularity: 'sentence' });
  } catch {
    return new Intl.Segmenter('en', { granularity: 'sentence' });
  }
}

function isGoodSentence(text: string): boolean {
  if (text.length < 30 || text.length > 500) return false;
  if (!/[.!?…。！？]["'”’»)\]]?$/u.test(text)) return false;
  if (text.split(' ').length < 5 && !CJK.test(text)) return false;
  const letters = text.match(/\p{L}/gu)?.length ?? 0;
  if (letters / text.length < 0.6) return false;
  if (/https?:\/\//.test(text) || BOILERPLATE.test(text)) return false;
  return true;
}

// --- choosing -------------------------------------------------------------------------------

const STOPWORDS = new Set(
  (
    'the and for are but not you all any can had her was one our out has have him his how its may new now ' +
    'see two who did get let say she too use that with this from they will would there their what about which ' +
    'when make like time just know take into year your some could them than then look only come over also back ' +
    'after work first well even want because these give most been were more very such here where much those ' +
    'should being each other same while said says'
  ).split(' '),
);

function words(text: string): string[] {
  return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => w.length >= 3 && !STOPWORDS.has(w));
}

/** The first good sentence, and the next one too when the first is short: how the page opens. */
function pickSummary(sentences: Sentence[]): Sentence[] {
  const [first, second] = sentences;
  if (!first) return [];
  if (second && first.text.length < 160 && first.text.length + second.text.length < POST_LIMITS.summaryMax) {
    return [first, second];
  }
  return [first];
}

/**
 * The best sentences in page order: each scores the page-wide frequency of its words (divided by
 * the square root of its length, so long sentences do not win by size alone), doubled for words
 * of the title, and weighted up to 1.5× for appearing early. Ties go to the earlier sentence.
 */
function pickSentences(sentences: Sentence[], title: string): Sentence[] {
  if (sentences.length === 0) return [];
  const frequency = new Map<string, number>();
  for (const s of sentences) for (const w of new Set(words(s.text))) frequency.set(w, (frequency.get(w) ?? 0) + 1);
  const maxFrequency = Math.max(1, ...frequency.values());
  const titleWords = new Set(words(title));

  const scored = sentences.map((s) => {
    const ws = words(s.text);
    let sum = 0;
    for (const w of new Set(ws)) sum += ((frequency.get(w) ?? 0) / maxFrequency) * (titleWords.has(w) ? 2 : 1);
    const position = 1 + 0.5 * (1 - s.index / sentences.length);
    return { s, score: (sum / Math.sqrt(ws.length + 1)) * position };
  });
  scored.sort((a, b) => b.score - a.score || a.s.index - b.s.index);

  const n = sentences.length;
  const want = n <= KEEP_ALL_UP_TO ? n : Math.min(MAX_SENTENCES, Math.max(KEEP_ALL_UP_TO, Math.round(n / 2)));
  const chosen: Sentence[] = [];
  let chars = 0;
  for (const { s } of scored) {
    if (chosen.length >= want) break;
    if (chars + s.text.length > BODY_CHAR_BUDGET && chosen.length > 0) continue;
    chosen.push(s);
    chars += s.text.length;
  }
  return chosen.sort((a, b) => a.index - b.index);
}

// --- writing --------------------------------------------------------------------------------

/** Sentences of one source paragraph stay together; a page heading above them becomes a ## section. */
function bodyMarkdown(chosen: Sentence[]): string[] {
  const lines: string[] = [];
  let heading: string | null = null;
  let paragraph: string[] = [];
  let paragraphNo = -1;
  const flush = () => {
    if (paragraph.length) lines.push(paragraph.join(' '), '');
    paragraph = [];
  };
  for (const s of chosen) {
    if (s.heading !== heading) {
      flush();
      heading = s.heading;
      if (heading) lines.push(`## ${escapeMarkdown(heading)}`, '');
    }
    if (s.paragraph !== paragraphNo || paragraph.length >= 4) flush();
    paragraphNo = s.paragraph;
    paragraph.push(escapeMarkdown(s.text));
  }
  flush();
  while (lines.at(-1) === '') lines.pop();
  return lines;
}

/** Page text is text, not Markdown: backslash-escape what Markdown would act on. */
function escapeMarkdown(text: string): string {
  return text
    .replace(/[\\`*_[\]<>&~|#]/g, '\\$&')
    .replace(/^([-+=]|\d+(?=[.)]))/, (m) => (m.length === 1 ? `\\${m}` : `${m}\\`));
}

function markdownLink(url: string): string {
  try {
    const u = new URL(url);
    if ((u.protocol === 'http:' || u.protocol === 'https:') && !/[\s<>]/.test(u.href)) return `<${u.href}>`;
  } catch {}
  return escapeMarkdown(collapse(url));
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** At most max characters, cut at a word boundary with an ellipsis when it had to be cut. */
function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.lastIndexOf(' ', max - 1);
  return `${text.slice(0, cut > max / 2 ? cut : max - 1).trimEnd()}…`;
}

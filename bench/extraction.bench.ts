// Extraction quality and speed: extractArticle over every page in test/fixtures/pages, scored
// against its .expected.txt as bags of words (token-level precision, recall, F1), with ms per page.
// No network. Writes the table to bench/results/extraction.md and prints it.
//
//   node bench/extraction.bench.ts [--runs 20] [--no-write]
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { extractArticle } from '../src/domains/scraper/extract.ts';
import { decodeHtml } from '../src/domains/scraper/safe-fetch.ts';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, 'no-write': { type: 'boolean', default: false } },
});
const RUNS = Math.max(1, Math.min(1000, Number(values.runs)));
const FIXTURES = new URL('../test/fixtures/pages/', import.meta.url).pathname;
const RESULTS = new URL('./results/extraction.md', import.meta.url).pathname;

export interface Score {
  precision: number;
  recall: number;
  f1: number;
  extracted: number;
  expected: number;
  overlap: number;
}

/** Lower-cased letter/digit runs, counted: the bag of words both sides are compared as. */
export function tokens(text: string): Map<string, number> {
  const bag = new Map<string, number>();
  for (const [token] of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) bag.set(token, (bag.get(token) ?? 0) + 1);
  return bag;
}

export function score(extracted: string, expected: string): Score {
  const got = tokens(extracted);
  const want = tokens(expected);
  let overlap = 0;
  for (const [token, n] of got) overlap += Math.min(n, want.get(token) ?? 0);
  const sum = (bag: Map<string, number>) => [...bag.values()].reduce((a, b) => a + b, 0);
  const nGot = sum(got);
  const nWant = sum(want);
  const precision = nGot ? overlap / nGot : 0;
  const recall = nWant ? overlap / nWant : 0;
  const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1, extracted: nGot, expected: nWant, overlap };
}

export function fixtureNames(): string[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.html'))
    .map((f) => path.basename(f, '.html'))
    .sort();
}

export function loadFixture(name: string): { html: string; expected: string; charset: string } {
  const { html, charset } = decodeHtml(readFileSync(path.join(FIXTURES, `${name}.html`)));
  return { html, charset, expected: readFileSync(path.join(FIXTURES, `${name}.expected.txt`), 'utf8') };
}

function main() {
  const rows: string[] = [];
  let overlap = 0;
  let extracted = 0;
  let expected = 0;
  let totalMs = 0;
  const names = fixtureNames();
  for (const name of names) {
    const page = loadFixture(name);
    const article = extractArticle(page.html, `https://fixtures.test/${name}`);
    const s = score(article.text, page.expected);
    for (let i = 0; i < 3; i++) extractArticle(page.html, 'https://fixtures.test/'); // warm-up
    const started = performance.now();
    for (let i = 0; i < RUNS; i++) extractArticle(page.html, 'https://fixtures.test/');
    const ms = (performance.now() - started) / RUNS;
    totalMs += ms;
    overlap += s.overlap;
    extracted += s.extracted;
    expected += s.expected;
    const kib = (Buffer.byteLength(page.html) / 1024).toFixed(1);
    rows.push(
      `| ${name} | ${page.charset} | ${kib} | ${s.expected} | ${s.extracted} | ${s.precision.toFixed(3)} | ${s.recall.toFixed(3)} | ${s.f1.toFixed(3)} | ${ms.toFixed(2)} |`,
    );
  }
  const p = overlap / extracted;
  const r = overlap / expected;
  const f1 = (2 * p * r) / (p + r);
  const table = [
    '| page | charset | KiB | expected words | extracted words | precision | recall | F1 | ms/page |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    `| **all (micro-averaged)** | | | ${expected} | ${extracted} | **${p.toFixed(3)}** | **${r.toFixed(3)}** | **${f1.toFixed(3)}** | ${(totalMs / names.length).toFixed(2)} |`,
  ].join('\n');
  console.log(table);
  if (values['no-write']) return;
  const machine = `${process.version}, ${process.platform}/${process.arch}`;
  writeFileSync(
    RESULTS,
    `# Extraction quality

\`node bench/extraction.bench.ts [--runs 20] [--no-write]\` (with the project's Node first on the PATH).

\`extractArticle\` (Readability 0.6.0 over linkedom 0.18.15, then a block-aware text walk) over the
${names.length} hand-written pages in \`test/fixtures/pages/\`, each decoded as the fetcher would (\`decodeHtml\`).
Each page's text is compared with its \`.expected.txt\` as a bag of words (lower-cased letter and digit
runs, counted): precision is the share of extracted words that belong to the expected text (the rest is
boilerplate that leaked in), recall the share of the expected words that were extracted. ms/page is the
mean of ${RUNS} runs after 3 warm-ups, parsing included. \`test/unit/scraper/extraction-quality.test.ts\`
holds every page to recall ≥ 0.9 and precision ≥ 0.85.

## ${new Date().toISOString().slice(0, 10)}

Node ${machine}.

${table}
`,
  );
  console.log(`\nwritten to ${path.relative(process.cwd(), RESULTS)}`);
}

if (import.meta.main) main();

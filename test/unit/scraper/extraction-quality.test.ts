// Every page in test/fixtures/pages keeps its main text (recall) without much boilerplate
// (precision), scored as bench/extraction.bench.ts scores it; figures in bench/results/extraction.md.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtureNames, loadFixture, score } from '../../../bench/extraction.bench.ts';
import { extractArticle } from '../../../src/domains/scraper/extract.ts';

const MIN_RECALL = 0.9;
const MIN_PRECISION = 0.85;

test('there are at least 8 fixtures, each with its expected text', () => {
  assert.ok(fixtureNames().length >= 8, fixtureNames().join(', '));
});

for (const name of fixtureNames()) {
  test(`${name}: recall ≥ ${MIN_RECALL}, precision ≥ ${MIN_PRECISION}`, () => {
    const page = loadFixture(name);
    const s = score(extractArticle(page.html, `https://fixtures.test/${name}`).text, page.expected);
    const figures = `precision ${s.precision.toFixed(3)}, recall ${s.recall.toFixed(3)}`;
    assert.ok(s.recall >= MIN_RECALL, figures);
    assert.ok(s.precision >= MIN_PRECISION, figures);
  });
}

test('the windows-1252 page is decoded before extraction', () => {
  const page = loadFixture('german-windows-1252');
  assert.equal(page.charset, 'windows-1252');
  const article = extractArticle(page.html, 'https://fixtures.test/');
  assert.match(article.text, /Seit über dreißig Jahren/);
  assert.match(article.text, /„Genießer“/);
  assert.match(article.text, /48 € für Erwachsene/);
  assert.equal(article.lang, 'de');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SLUG_MAX_LENGTH, slugify, uniqueSlug } from '../../../src/domains/blog/slug.ts';

test('slugify: lowercase ASCII, punctuation to single hyphens, no hyphen at either end', () => {
  assert.equal(slugify('Hello, World!'), 'hello-world');
  assert.equal(slugify('  --Rust & Go: a 2026 comparison--  '), 'rust-go-a-2026-comparison');
  assert.equal(slugify('one___two...three'), 'one-two-three');
});

test('slugify folds accents and a few letters NFKD leaves alone', () => {
  assert.equal(slugify('Crème brûlée à la française'), 'creme-brulee-a-la-francaise');
  assert.equal(slugify('Straße über Øresund, Łódź'), 'strasse-uber-oresund-lodz');
  assert.equal(slugify('ＦＵＬＬ width ① ﬁne'), 'full-width-1-fine');
});

test('slugify falls back to "post" when nothing is left', () => {
  assert.equal(slugify(''), 'post');
  assert.equal(slugify('!!!'), 'post');
  assert.equal(slugify('日本語のタイトル'), 'post');
  assert.equal(slugify('🍞🍞'), 'post');
});

test('slugify cuts long titles at a hyphen, within the limit', () => {
  const slug = slugify('The quick brown fox jumps over the lazy dog and keeps running across the field');
  assert.ok(slug.length <= SLUG_MAX_LENGTH);
  assert.equal(slug, 'the-quick-brown-fox-jumps-over-the-lazy-dog-and-keeps');
  const oneWord = slugify('a'.repeat(100));
  assert.equal(oneWord, 'a'.repeat(SLUG_MAX_LENGTH));
});

test('uniqueSlug: a stable 6-character base32 suffix from the request id', () => {
  const a = uniqueSlug('Hello World', 'req-1');
  assert.match(a, /^hello-world-[a-z2-7]{6}$/);
  assert.equal(uniqueSlug('Hello World', 'req-1'), a);
  assert.notEqual(uniqueSlug('Hello World', 'req-2'), a);
  assert.match(uniqueSlug('', 'req-1'), /^post-[a-z2-7]{6}$/);
  const suffixes = new Set(Array.from({ length: 1000 }, (_, i) => uniqueSlug('x', `req-${i}`)));
  assert.equal(suffixes.size, 1000);
});

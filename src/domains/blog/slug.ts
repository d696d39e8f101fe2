// Post slugs: a readable part from the title (lowercase ASCII, accents folded) and a short
// suffix derived from the request id, so two posts with the same title get different slugs
// without a look-up-and-retry loop, and a retried task computes the same slug again.
import { createHash } from 'node:crypto';

export const SLUG_MAX_LENGTH = 60;
const SUFFIX_LENGTH = 6;

// Letters NFKD does not decompose into a base letter plus marks.
const FOLDS: Record<string, string> = {
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  đ: 'd',
  ð: 'd',
  ħ: 'h',
  ı: 'i',
  ł: 'l',
  þ: 'th',
};

export function slugify(title: string): string {
  const folded = title
    .toLowerCase()
    .replace(/[ßæœøđðħıłþ]/g, (c) => FOLDS[c] ?? c)
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '');
  let slug = folded.replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  if (slug.length > SLUG_MAX_LENGTH) {
    const cut = slug.lastIndexOf('-', SLUG_MAX_LENGTH);
    // Cut at a word boundary unless that would throw away most of the allowance.
    slug = slug.slice(0, cut >= SLUG_MAX_LENGTH / 2 ? cut : SLUG_MAX_LENGTH).replace(/-+$/, '');
  }
  return slug || 'post';
}

/**
 * `${slugify(base)}-${6 base32 characters of sha256(suffixSource)}`: 30 bits, stable for the same
 * request id. The stored slug should still be UNIQUE in the database; a clash is then an error
 * worth seeing, not a loop.
 */
export function uniqueSlug(base: string, suffixSource: string): string {
  return `${slugify(base)}-${shortHash(suffixSource)}`;
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function shortHash(text: string): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < SUFFIX_LENGTH) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length === SUFFIX_LENGTH) break;
  }
  return out;
}

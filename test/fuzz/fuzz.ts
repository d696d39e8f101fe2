// What every fuzz test shares: the run count (FUZZ_RUNS raises it), a seed to replay a failure
// (FUZZ_SEED, with FUZZ_PATH to go straight to the shrunk case), and a fingerprint of the tables a
// refused request must leave untouched. docs/testing.md says how to use them.
import fc from 'fast-check';
import type { Queryable } from '../../src/db/db.ts';

/** Runs per property: the given default (kept small for CI), or FUZZ_RUNS. */
export function runs(byDefault: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(n) && n > 0 ? n : byDefault;
}

/**
 * fast-check's parameters for one property. A failure's message names the seed and path
 * (fast-check prints them); FUZZ_SEED=<seed> FUZZ_PATH=<path> replays exactly that case.
 */
export function params<T>(byDefault: number): fc.Parameters<T> {
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  return {
    numRuns: runs(byDefault),
    ...(seed !== undefined && Number.isInteger(seed) ? { seed } : {}),
    ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
    ...(process.env.FUZZ_SHRINK === '0' ? { endOnFailure: true } : {}),
  };
}

/** Tables whose rows are the service's state: a refused request must not change any of them. */
export const STATE_TABLES = [
  'task_runs',
  'task_outbox',
  'whatsapp_messages',
  'whatsapp_statuses',
  'whatsapp_contacts',
  'accounts',
  'credit_ledger',
  'credit_holds',
  'stripe_events',
  'stripe_payments',
  'stripe_unmatched_payments',
  'stripe_clawbacks',
] as const;

/** Row count and a hash of every row of each state table (same on PGlite and PostgreSQL). */
export async function fingerprint(db: Queryable): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of STATE_TABLES) {
    const { rows } = await db.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS h FROM ${table} t`,
    );
    out[table] = `${rows[0]!.n} rows, ${rows[0]!.h}`;
  }
  return out;
}

/** Strings that break naive code: NUL, lone surrogates, RTL marks, huge numbers, JSON-ish text. */
export const nastyString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    '\udfff',
    '\u202e',
    '\ufeff',
    '💥',
    '%00',
    '../../etc/passwd',
    '1e309',
    '-1',
    '9007199254740993',
    '99999999999999999999',
    'NaN',
    'null',
    'true',
    '{}',
    '[]',
    '__proto__',
    'constructor',
    "'; DROP TABLE task_runs; --",
    '<script>alert(1)</script>',
    'x'.repeat(5000),
  ),
);

/** Any JSON value, nasty strings included, kept small. */
export const anyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(0, -0, 1e308, -1e308, 2 ** 53, 2 ** 63, 0.1),
    nastyString,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nastyString, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** JSON text of `value` with some structure changed: truncated, doubled, or a byte flipped. */
export const malformedJson = (text: fc.Arbitrary<string>) =>
  fc.oneof(
    fc.tuple(text, fc.nat()).map(([s, n]) => s.slice(0, s.length === 0 ? 0 : n % s.length)),
    fc
      .tuple(text, fc.nat(), fc.constantFrom('{', '}', '"', ',', ':', '\\', '\u0000', '['))
      .map(([s, n, c]) => `${s.slice(0, n % (s.length + 1))}${c}${s.slice(n % (s.length + 1))}`),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );

/** HTTP header values that Node accepts on a request (no CR/LF, visible Latin-1). */
export const headerValue = fc.oneof(
  fc.string({ maxLength: 120 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, '')),
  fc.stringMatching(/^[\t\x20-\x7e\x80-\xff]{0,200}$/),
);

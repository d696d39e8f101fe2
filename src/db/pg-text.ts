// What PostgreSQL's text type refuses. A text value (and a jsonb string) cannot hold U+0000: the
// server answers `invalid byte sequence for encoding "UTF8": 0x00` (jsonb: `unsupported Unicode
// escape sequence`), and a retry fails the same way. Every other code point is stored as it is;
// lone UTF-16 surrogates never reach the server as such (the UTF-8 encoding on the way turns each
// into U+FFFD). Text from outside (a fetched page, a model's answer) goes through pgText before
// it is stored.

/** The text without U+0000, so that PostgreSQL stores it. */
export function pgText(text: string): string {
  return text.replaceAll('\u0000', '');
}

/** pgText for a value that may be absent. */
export function pgTextOrNull(text: string | null): string | null {
  return text === null ? null : pgText(text);
}

/**
 * JSON text for a jsonb parameter. jsonb refuses two escapes that JSON.stringify writes: \u0000,
 * and a lone UTF-16 surrogate (\ud800, from a JSON body that held one): each becomes \ufffd, so a
 * payload from outside is stored instead of failing the request every time it is retried. An
 * escaped backslash is skipped, so the text "\u0000" (backslash, u, 0000) stays as it is.
 */
export function pgJson(value: unknown): string {
  return JSON.stringify(value).replace(/\\(\\|u0000|ud[89a-f][0-9a-f]{2})/g, (m, e: string) =>
    e === '\\' ? m : '\\ufffd',
  );
}

/**
 * A parsed JSON value (keys included) with every string made storable: U+0000 and lone UTF-16
 * surrogates become U+FFFD. For a whole body from outside whose strings reach text and jsonb
 * columns in many places.
 */
export function pgSafeJson(value: unknown): unknown {
  if (typeof value === 'string') return value.toWellFormed().replaceAll('\u0000', '\uFFFD');
  if (Array.isArray(value)) return value.map(pgSafeJson);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [pgSafeJson(k) as string, pgSafeJson(v)]));
  }
  return value;
}

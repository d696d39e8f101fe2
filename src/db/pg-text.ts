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

// The random secrets of login and sessions, and how they are kept: 256-bit tokens in cookies,
// their SHA-256 in the database (a read of the tables gives no usable cookie), and the rule for
// where a login may return to.
import { createHash, createHmac, randomBytes } from 'node:crypto';

/** A random 256-bit token, base64url (43 characters). */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The shape randomToken() makes: anything else is not looked up at all. */
export function isToken(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]{43}$/.test(value);
}

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** A session's CSRF token: derived from its token, so nothing more is stored, and useless without the key. */
export function csrfTokenFor(key: string, sessionToken: string): string {
  return createHmac('sha256', key).update(`csrf:session:${sessionToken}`).digest('base64url');
}

export const DEFAULT_RETURN_TO = '/admin';

/**
 * Where a login may send the browser afterwards: a path under /admin on this site, normalised,
 * or /admin. Never another origin (`//evil.example`, `/\evil.example`, `https://…`): no open redirect.
 */
export function safeReturnTo(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2000) return DEFAULT_RETURN_TO;
  // Browsers treat a backslash as a slash, and control characters are dropped before parsing.
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\') || hasControlCharacter(value)) {
    return DEFAULT_RETURN_TO;
  }
  let url: URL;
  try {
    url = new URL(value, 'http://return-to.invalid');
  } catch {
    return DEFAULT_RETURN_TO;
  }
  if (url.origin !== 'http://return-to.invalid') return DEFAULT_RETURN_TO;
  // After normalisation (dot segments, %2e%2e): still the dashboard.
  if (url.pathname !== '/admin' && !url.pathname.startsWith('/admin/')) return DEFAULT_RETURN_TO;
  return url.pathname + url.search;
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

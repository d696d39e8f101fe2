// Which driver errors mean "the database is not there for us right now" (retry later) rather than
// "this statement is wrong". Pure (no driver import), so the HTTP error handler can classify an
// error that reached it unwrapped without importing a database adapter.

// SQLSTATE: class 08 (connection exception), 57P01 admin shutdown, 57P02 crash shutdown,
// 57P03 cannot connect now (starting up, shutting down, in recovery), 53300 too many connections.
const UNAVAILABLE_SQLSTATE = /^(08|57P0[123]|53300)/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);
// node-postgres says these in words only (no code): a socket closed under a query, a pool that
// waited connectionTimeoutMillis for a connection or a connect that took longer, a client whose
// socket already failed (or that was closed).
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|^timeout expired$|is not queryable/i;

/** The driver's error says the database was unreachable, went away or refused to connect. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_ERRNO.has(code)) return true;
  return isServerUnavailable(err);
}

/**
 * The same, from what only a PostgreSQL server or node-postgres says (a SQLSTATE, node-postgres'
 * own words), leaving out bare socket errors such as ECONNREFUSED, which an HTTP client also
 * raises: for an error that did not come through the database adapter.
 */
export function isServerUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_SQLSTATE.test(code)) return true;
  return UNAVAILABLE_MESSAGE.test(err.message);
}

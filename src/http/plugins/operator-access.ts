// Who may use /admin, decided before any dashboard route runs, and CSRF protection for every
// state-changing request there. Two ways in:
// - login configured (OAUTH_CLIENT_ID): a session cookie backed by the database (domains/auth);
//   without one, a page is redirected to the login and anything else is refused (401);
// - no login and the local task backend: clients on this machine only (the socket's address is
//   loopback, the Host names this machine, and no proxy forwarded the request), said on every page.
// Anything else is refused.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sendMessagePage } from '../../admin/layout.ts';
import type { Operator } from '../../admin/operator.ts';
import type { Config } from '../../config.ts';
import type { LoginService } from '../../domains/auth/index.ts';

export interface OperatorAccessDeps {
  config: Config;
  /** Sessions, when login is configured. */
  login?: LoginService | undefined;
}

/** The cookie naming the browser in loopback mode (its CSRF token is derived from it). */
export const BROWSER_COOKIE = 'admin_browser';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Cookies are Secure when the public URL is https; then they also take the __Host- prefix. */
export function secureCookies(config: Config): boolean {
  return config.publicBaseUrl.startsWith('https:');
}

/**
 * The session cookie: a random token whose SHA-256 is the session's key in the database. With the
 * __Host- prefix (https) the browser accepts it only from this host, Secure, Path=/, no Domain, so
 * a sibling subdomain cannot plant or overwrite it.
 */
export function sessionCookieName(config: Config): string {
  return secureCookies(config) ? '__Host-admin_session' : 'admin_session';
}

/** The cookie naming the browser that started a login (its hash is stored with the state). */
export function loginCookieName(config: Config): string {
  return secureCookies(config) ? '__Host-admin_login' : 'admin_login';
}

/** Login is configured when a client id is set; the issuer defaults to Google. */
export function loginConfigured(config: Config): boolean {
  return config.oauth.clientId !== undefined;
}

/** The dashboard may be open without a login: no login configured, and the local task backend. */
export function loopbackAccessAllowed(config: Config): boolean {
  return !loginConfigured(config) && config.tasks.backend === 'emulator';
}

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

/** The request came straight from this machine: loopback socket, local Host, no proxy in between. */
export function isLocalRequest(request: FastifyRequest): boolean {
  const address = request.raw.socket.remoteAddress ?? '';
  const loopbackSocket = address === '::1' || /^(?:::ffff:)?127\./.test(address);
  const host = request.headers.host ?? '';
  const proxied = request.headers['x-forwarded-for'] !== undefined || request.headers.forwarded !== undefined;
  return loopbackSocket && LOOPBACK_HOST.test(host) && !proxied;
}

export function operatorAccess(scope: FastifyInstance, deps: OperatorAccessDeps): void {
  const { config, login } = deps;
  const csrfKey = config.sessionSecret ?? randomBytes(32).toString('base64url');

  scope.addHook('onRequest', async (request, reply) => {
    if (loopbackAccessAllowed(config)) {
      if (!isLocalRequest(request)) return refuseClosed(reply);
      let browser = request.cookies[BROWSER_COOKIE];
      if (!browser || !/^[A-Za-z0-9_-]{43}$/.test(browser)) {
        browser = randomBytes(32).toString('base64url');
        reply.setCookie(BROWSER_COOKIE, browser, { path: '/', httpOnly: true, sameSite: 'strict' });
      }
      const operator: Operator = {
        email: 'loopback',
        via: 'loopback',
        csrfToken: createHmac('sha256', csrfKey).update(`csrf:${browser}`).digest('base64url'),
      };
      request.operator = operator;
      return;
    }
    if (login) {
      const session = await login.session(request.cookies[sessionCookieName(config)]);
      if (session) {
        request.operator = { email: session.email, via: 'session', csrfToken: session.csrfToken };
        return;
      }
      return refuseWithoutSession(request, reply);
    }
    return refuseClosed(reply);
  });

  scope.addHook('preHandler', async (request, reply) => {
    if (SAFE_METHODS.has(request.method)) return;
    if (!request.operator || !csrfMatches(request, request.operator.csrfToken)) {
      return sendMessagePage(reply, 403, {
        title: 'Request refused',
        text: 'This form is out of date or did not come from this dashboard (its CSRF token is missing or wrong). Nothing was changed. Go back, reload the page and try again.',
        link: { href: '/admin', label: 'Back to the dashboard' },
      });
    }
  });
}

/** The form's `_csrf` field (or an X-CSRF-Token header) equals the operator's token. */
export function csrfMatches(request: FastifyRequest, expected: string): boolean {
  const body = request.body as Record<string, unknown> | undefined;
  const given = String(
    (body && typeof body === 'object' ? body._csrf : undefined) ?? request.headers['x-csrf-token'] ?? '',
  );
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** No live session: a page goes to the login and comes back; anything else changes nothing. */
function refuseWithoutSession(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (request.method === 'GET' || request.method === 'HEAD') {
    return reply
      .header('cache-control', 'no-store')
      .redirect(`/auth/login?return_to=${encodeURIComponent(request.url)}`, 302);
  }
  return sendMessagePage(reply, 401, {
    title: 'Not logged in',
    text: 'Your session has ended or you are not logged in, so nothing was changed. Log in and try again.',
    link: { href: '/auth/login', label: 'Log in' },
  });
}

function refuseClosed(reply: FastifyReply): FastifyReply {
  return sendMessagePage(reply, 403, {
    title: 'Dashboard closed',
    text: 'No login is configured, so the dashboard is open only to clients on the machine the service runs on, and only with the local task backend. Set OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET and ADMIN_EMAILS to open it to operators who log in.',
  });
}

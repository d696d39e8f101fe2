// Who may use /admin, decided before any dashboard route runs, and CSRF protection for every
// state-changing request there. Two ways in:
// - login configured (OAUTH_CLIENT_ID): a session cookie backed by the database (see the auth domain);
// - no login and the local task backend: clients on this machine only (the socket's address is
//   loopback, the Host names this machine, and no proxy forwarded the request), said on every page.
// Anything else is refused.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sendMessagePage } from '../../admin/layout.ts';
import type { Operator } from '../../admin/operator.ts';
import type { Config } from '../../config.ts';

export interface OperatorAccessDeps {
  config: Config;
}

/** The cookie naming the browser in loopback mode (its CSRF token is derived from it). */
export const BROWSER_COOKIE = 'admin_browser';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

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
  const { config } = deps;
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
    // Sessions (login configured) are added by the auth domain's access check.
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

function refuseClosed(reply: FastifyReply): FastifyReply {
  return sendMessagePage(reply, 403, {
    title: 'Dashboard closed',
    text: 'No login is configured, so the dashboard is open only to clients on the machine the service runs on, and only with the local task backend. Set OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET and ADMIN_EMAILS to open it to operators who log in.',
  });
}

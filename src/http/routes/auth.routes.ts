// GET /auth/login, GET /auth/callback, POST /auth/logout: the operators' OpenID Connect login
// (registered only when login is configured). Thin: the login service decides; these routes carry
// its cookies and answer with pages.
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { sendMessagePage } from '../../admin/layout.ts';
import type { Config } from '../../config.ts';
import {
  IssuerUnavailableError,
  isToken,
  LOGIN_STATE_TTL_MS,
  type LoginService,
  randomToken,
  SESSION_ABSOLUTE_TTL_MS,
} from '../../domains/auth/index.ts';
import { csrfMatches, loginCookieName, secureCookies, sessionCookieName } from '../plugins/operator-access.ts';

export interface AuthRouteDeps {
  config: Config;
  login: LoginService;
}

const LOGIN_AGAIN = { href: '/auth/login', label: 'Log in again' } as const;

export async function authRoutes(app: FastifyInstance, deps: AuthRouteDeps): Promise<void> {
  const { config, login } = deps;
  const secure = secureCookies(config);
  const sessionCookie = sessionCookieName(config);
  const loginCookie = loginCookieName(config);
  // Lax, not Strict: the provider sends the browser back with a cross-site GET, which must carry them.
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'lax', secure } as const;

  const issuerDown = (reply: FastifyReply, err: IssuerUnavailableError) => {
    reply.log.warn({ err: { message: err.message } }, 'login provider unavailable');
    return sendMessagePage(reply.header('retry-after', '30'), 503, {
      title: 'Login unavailable',
      text: 'The login provider cannot be reached right now. Nothing was changed; try again in a minute.',
      link: LOGIN_AGAIN,
    });
  };

  await app.register(async (scope) => {
    await scope.register(fastifyFormbody, { bodyLimit: 4096 });

    scope.get<{ Querystring: { return_to?: unknown } }>('/auth/login', async (request, reply) => {
      // One login cookie per browser, reused by every login it starts (two tabs do not undo each other).
      const existing = request.cookies[loginCookie];
      const browser = isToken(existing) ? existing : randomToken();
      let url: URL;
      try {
        url = await login.start({ browser, returnTo: request.query.return_to });
      } catch (err) {
        if (err instanceof IssuerUnavailableError) return issuerDown(reply, err);
        throw err;
      }
      reply.setCookie(loginCookie, browser, { ...cookieOptions, maxAge: LOGIN_STATE_TTL_MS / 1000 });
      return reply.header('cache-control', 'no-store').redirect(url.href, 302);
    });

    scope.get('/auth/callback', async (request, reply) => {
      // What the provider sent, against the URL it was registered with (the same behind a proxy).
      const callbackUrl = new URL(`/auth/callback${new URL(request.url, 'http://x').search}`, config.publicBaseUrl);
      let outcome: Awaited<ReturnType<LoginService['complete']>>;
      try {
        outcome = await login.complete({ browser: request.cookies[loginCookie], callbackUrl });
      } catch (err) {
        if (err instanceof IssuerUnavailableError) return issuerDown(reply, err);
        throw err;
      }
      reply.header('cache-control', 'no-store');
      switch (outcome.kind) {
        case 'invalid_state':
          request.log.warn('login callback refused: unknown, used or expired state, or another browser');
          return sendMessagePage(reply, 400, {
            title: 'Login not completed',
            text: 'This login link cannot be used here: it has expired (a login must finish within 10 minutes), it was already used, or the login was started in another browser. Nothing was changed. Start the login again.',
            link: LOGIN_AGAIN,
          });
        case 'failed':
          request.log.warn({ reason: outcome.reason }, 'login failed at the provider');
          reply.clearCookie(loginCookie, cookieOptions);
          return sendMessagePage(reply, 400, {
            title: 'Login failed',
            text: 'The login provider did not confirm who you are (the login was cancelled or its answer did not pass the checks). Nothing was changed.',
            link: LOGIN_AGAIN,
          });
        case 'refused':
          request.log.warn({ reason: outcome.reason }, 'login refused');
          reply.clearCookie(loginCookie, cookieOptions);
          return sendMessagePage(reply, 403, {
            title: 'Not allowed',
            text:
              outcome.reason === 'not_allowed'
                ? `You signed in as ${outcome.email}, which is not allowed to use this dashboard. Ask an administrator to add it to ADMIN_EMAILS, or log in with another account.`
                : outcome.reason === 'email_not_verified'
                  ? `The provider has not verified the e-mail address ${outcome.email}, so it cannot be used to log in here.`
                  : 'The provider did not give an e-mail address for this account, so it cannot be used to log in here.',
            link: { href: '/auth/login', label: 'Log in with another account' },
          });
        case 'ok':
          request.log.info('operator logged in');
          reply.clearCookie(loginCookie, cookieOptions);
          reply.setCookie(sessionCookie, outcome.sessionToken, {
            ...cookieOptions,
            maxAge: SESSION_ABSOLUTE_TTL_MS / 1000,
          });
          return reply.redirect(outcome.returnTo, 303);
      }
    });

    scope.post('/auth/logout', async (request, reply) => {
      const token = request.cookies[sessionCookie];
      const session = await login.session(token);
      if (session && !csrfMatches(request, session.csrfToken)) {
        return sendMessagePage(reply, 403, {
          title: 'Request refused',
          text: 'This logout did not come from the dashboard (its CSRF token is missing or wrong), so you are still logged in. Use the Log out button of the dashboard.',
          link: { href: '/admin', label: 'Back to the dashboard' },
        });
      }
      if (session) await login.logout(token);
      reply.clearCookie(sessionCookie, cookieOptions);
      return sendMessagePage(reply, 200, {
        title: 'Logged out',
        text: 'Your session has ended on the server; this browser no longer opens the dashboard.',
        link: LOGIN_AGAIN,
      });
    });
  });
}

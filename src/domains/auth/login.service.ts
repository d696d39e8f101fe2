// Operators' login and sessions: start a login (state, nonce and PKCE verifier stored, bound to the
// browser), complete it (consume the state once, exchange the code, allow only verified e-mails in
// ADMIN_EMAILS, open a session), recognise a session, end it. Every time comes from the clock.
import { randomNonce, randomPKCECodeVerifier, randomState } from 'openid-client';
import type { Clock } from '../../clock.ts';
import type { Config } from '../../config.ts';
import type { Db } from '../../db/db.ts';
import { auditEvents } from '../audit/index.ts';
import { csrfTokenFor, isToken, randomToken, safeReturnTo, sha256 } from './auth-tokens.ts';
import { loginStates } from './login-states.repository.ts';
import { createOidcClient, LoginFailedError, type OidcClient } from './oidc.client.ts';
import { operatorSessions } from './sessions.repository.ts';

/** A login must come back within this time. */
export const LOGIN_STATE_TTL_MS = 10 * 60_000;
/** A session ends this long after the login, whatever the activity. */
export const SESSION_ABSOLUTE_TTL_MS = 12 * 60 * 60_000;
/** A session ends after this long without a request. */
export const SESSION_IDLE_TTL_MS = 60 * 60_000;
/** last_seen_at is written at most this often (a read per request, a write per minute). */
export const SESSION_TOUCH_INTERVAL_MS = 60_000;

export interface LoginServiceDeps {
  db: Db;
  clock: Clock;
  oidc: OidcClient;
  /** Lower-cased. */
  adminEmails: readonly string[];
  /** Keys the sessions' CSRF tokens: the same on every instance (SESSION_SECRET). */
  csrfKey: string;
}

export type RefusalReason = 'not_allowed' | 'email_not_verified' | 'no_email';

export type LoginOutcome =
  /** Unknown, used or expired state, or another browser's: nothing happened. */
  | { kind: 'invalid_state' }
  /** The provider said no (the user cancelled) or its answer failed a check. */
  | { kind: 'failed'; reason: string }
  /** Authenticated, but not allowed in: no session was created. */
  | { kind: 'refused'; email: string | undefined; reason: RefusalReason }
  | { kind: 'ok'; email: string; sessionToken: string; returnTo: string };

export interface SessionInfo {
  email: string;
  csrfToken: string;
}

export class LoginService {
  readonly #deps: LoginServiceDeps;
  readonly #allowed: ReadonlySet<string>;

  constructor(deps: LoginServiceDeps) {
    this.#deps = deps;
    this.#allowed = new Set(deps.adminEmails.map((e) => e.toLowerCase()));
  }

  /**
   * Starts a login for the browser named by `browser` (the value of its login cookie): stores the
   * state's hash with the nonce, the PKCE verifier and where to return, for 10 minutes.
   */
  async start(input: { browser: string; returnTo: unknown }): Promise<URL> {
    const { db, clock, oidc } = this.#deps;
    const state = randomState();
    const nonce = randomNonce();
    const codeVerifier = randomPKCECodeVerifier();
    // Built first: when the provider cannot be reached, nothing is stored.
    const url = await oidc.authorizationUrl({ state, nonce, codeVerifier });
    const now = new Date(clock.now());
    // Logins are rare: clearing the abandoned ones here keeps the table small without a job.
    await loginStates.deleteExpired(db, now);
    await loginStates.insert(db, {
      stateHash: sha256(state),
      browserHash: sha256(input.browser),
      codeVerifier,
      nonce,
      returnTo: safeReturnTo(input.returnTo),
      createdAt: now,
      expiresAt: new Date(now.getTime() + LOGIN_STATE_TTL_MS),
    });
    return url;
  }

  /** Completes the login the callback URL answers; `browser` is the login cookie sent with it. */
  async complete(input: { browser: string | undefined; callbackUrl: URL }): Promise<LoginOutcome> {
    const { db, clock, oidc } = this.#deps;
    const state = input.callbackUrl.searchParams.get('state');
    if (!state || !isToken(input.browser)) return { kind: 'invalid_state' };
    const consumed = await loginStates.consume(db, {
      stateHash: sha256(state),
      browserHash: sha256(input.browser),
      now: new Date(clock.now()),
    });
    if (!consumed) return { kind: 'invalid_state' };

    const providerError = input.callbackUrl.searchParams.get('error');
    if (providerError) return { kind: 'failed', reason: providerError };
    let claims: Awaited<ReturnType<OidcClient['exchange']>>;
    try {
      claims = await oidc.exchange(input.callbackUrl, { state, ...consumed });
    } catch (err) {
      if (err instanceof LoginFailedError) return { kind: 'failed', reason: err.message };
      throw err;
    }

    const email = claims.email?.trim().toLowerCase();
    const reason: RefusalReason | null = !email
      ? 'no_email'
      : !claims.emailVerified
        ? 'email_not_verified'
        : !this.#allowed.has(email)
          ? 'not_allowed'
          : null;
    const now = new Date(clock.now());
    if (reason !== null || email === undefined) {
      await auditEvents.append(db, {
        at: now,
        actor: email ?? `sub:${claims.sub}`,
        action: 'login.refused',
        detail: { reason, issuer: oidc.issuerUrl },
      });
      return { kind: 'refused', email, reason: reason ?? 'no_email' };
    }

    const sessionToken = randomToken();
    await db.transaction(async (tx) => {
      await operatorSessions.deleteEnded(tx, { now, idleSince: new Date(now.getTime() - SESSION_IDLE_TTL_MS) });
      await operatorSessions.insert(tx, {
        tokenHash: sha256(sessionToken),
        email,
        now,
        expiresAt: new Date(now.getTime() + SESSION_ABSOLUTE_TTL_MS),
      });
      await auditEvents.append(tx, { at: now, actor: email, action: 'login', detail: { issuer: oidc.issuerUrl } });
    });
    return { kind: 'ok', email, sessionToken, returnTo: consumed.returnTo };
  }

  /**
   * The live session the cookie's token names, or null: unknown, past its absolute expiry, idle
   * too long, or for an e-mail no longer in ADMIN_EMAILS.
   */
  async session(token: string | undefined): Promise<SessionInfo | null> {
    if (!isToken(token)) return null;
    const { db, clock, csrfKey } = this.#deps;
    const now = clock.now();
    const tokenHash = sha256(token);
    const live = await operatorSessions.findLive(db, {
      tokenHash,
      now: new Date(now),
      idleSince: new Date(now - SESSION_IDLE_TTL_MS),
    });
    if (!live || !this.#allowed.has(live.email)) return null;
    if (now - live.lastSeenAt.getTime() >= SESSION_TOUCH_INTERVAL_MS) {
      await operatorSessions.touch(db, {
        tokenHash,
        now: new Date(now),
        staleBefore: new Date(now - SESSION_TOUCH_INTERVAL_MS),
      });
    }
    return { email: live.email, csrfToken: csrfTokenFor(csrfKey, token) };
  }

  /** Ends the session in the database (and records it); false when there was none. */
  async logout(token: string | undefined): Promise<boolean> {
    if (!isToken(token)) return false;
    const { db, clock } = this.#deps;
    return db.transaction(async (tx) => {
      const email = await operatorSessions.delete(tx, sha256(token));
      if (email === null) return false;
      await auditEvents.append(tx, { at: new Date(clock.now()), actor: email, action: 'logout' });
      return true;
    });
  }
}

/** The login service when login is configured (OAUTH_CLIENT_ID), else undefined. */
export function createLoginService(deps: { config: Config; db: Db; clock: Clock }): LoginService | undefined {
  const { config } = deps;
  const { clientId, clientSecret, issuerUrl } = config.oauth;
  if (clientId === undefined || clientSecret === undefined) return undefined;
  return new LoginService({
    db: deps.db,
    clock: deps.clock,
    oidc: createOidcClient({ issuerUrl, clientId, clientSecret, redirectUri: `${config.publicBaseUrl}/auth/callback` }),
    adminEmails: config.adminEmails,
    // Without SESSION_SECRET (only possible outside cloud mode and main.ts) tokens hold for this process.
    csrfKey: config.sessionSecret ?? randomToken(),
  });
}

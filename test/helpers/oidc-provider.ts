// A local OpenID provider standing in for Google's sign-in (which tests cannot reach):
// oauth2-mock-server on 127.0.0.1 speaking the real wire format (discovery, /authorize with PKCE
// and nonce, /token issuing a signed ID token, /jwks). /authorize answers at once with a redirect
// to the redirect_uri (no login form), so a test or a browser simply follows it. The ID token
// carries the e-mail of the user set with setNextUser.
import { type MutableRedirectUri, type MutableToken, OAuth2Server } from 'oauth2-mock-server';

export interface OidcUser {
  email: string;
  /** Defaults to true. */
  email_verified?: boolean;
  /** Defaults to a value derived from the e-mail. */
  sub?: string;
}

export interface OidcProvider {
  /** http://127.0.0.1:<port>: what OAUTH_ISSUER_URL is set to. */
  issuerUrl: string;
  port: number;
  /**
   * The user of every authorization from now on (until set again). The user is fixed when the
   * browser passes /authorize, so two logins in flight each get the user set at their start.
   */
  setNextUser(user: OidcUser): void;
  /**
   * Changes the claims of the tokens of the next token request, after the user's claims are set
   * (to make an ID token fail a check: another audience, another nonce, an old expiry).
   */
  tamperNextTokens(edit: (payload: Record<string, unknown>) => void): void;
  /** The query of every /authorize request so far (to check PKCE S256, nonce and state were sent). */
  authorizeRequests: URLSearchParams[];
  close(): Promise<void>;
}

export const DEFAULT_USER: OidcUser = { email: 'admin@example.com', email_verified: true };

export async function startOidcProvider(options: { port?: number; user?: OidcUser } = {}): Promise<OidcProvider> {
  const server = new OAuth2Server();
  await server.issuer.keys.generate('RS256');
  await server.start(options.port ?? 0, '127.0.0.1');
  const port = server.address().port;
  // The mock names itself http://localhost:<port>; 127.0.0.1 avoids depending on how localhost resolves.
  const issuerUrl = `http://127.0.0.1:${port}`;
  server.issuer.url = issuerUrl;

  let current: OidcUser = options.user ?? DEFAULT_USER;
  const byCode = new Map<string, OidcUser>();
  const authorizeRequests: URLSearchParams[] = [];
  let tamper: ((payload: Record<string, unknown>) => void) | undefined;

  server.service.on('beforeAuthorizeRedirect', (redirect: MutableRedirectUri, req: { url?: string }) => {
    authorizeRequests.push(new URL(req.url ?? '/', issuerUrl).searchParams);
    const code = redirect.url.searchParams.get('code');
    if (code) byCode.set(code, current);
  });
  // Fires for the access token and the ID token of a token request; both get the user's claims.
  server.service.on('beforeTokenSigning', (token: MutableToken, req: { body?: { code?: unknown } }) => {
    const code = typeof req.body?.code === 'string' ? req.body.code : undefined;
    const user = (code !== undefined ? byCode.get(code) : undefined) ?? current;
    token.payload.sub = user.sub ?? `user-${user.email}`;
    token.payload.email = user.email;
    token.payload.email_verified = user.email_verified ?? true;
    tamper?.(token.payload);
  });
  // Both tokens of the request are signed by now.
  server.service.on('beforeResponse', () => {
    tamper = undefined;
  });

  return {
    issuerUrl,
    port,
    setNextUser(user) {
      current = user;
    },
    tamperNextTokens(edit) {
      tamper = edit;
    },
    authorizeRequests,
    async close() {
      await server.stop();
    },
  };
}

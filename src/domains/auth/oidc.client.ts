// The OpenID Connect client (openid-client): the provider's configuration found by discovery and
// cached, the authorization URL (code flow, PKCE S256, state, nonce), and the code exchange that
// checks the ID token (signature, issuer, audience, expiry, nonce). Stateless: what a login must
// remember is stored by the login service.
import * as oidc from 'openid-client';

export interface OidcClientOptions {
  /** The issuer, found by discovery at {issuerUrl}/.well-known/openid-configuration. */
  issuerUrl: string;
  clientId: string;
  clientSecret: string;
  /** PUBLIC_BASE_URL + /auth/callback: registered with the provider. */
  redirectUri: string;
  /** How long a request to the provider may take. */
  timeoutMs?: number;
}

/** The provider could not be reached (or answered 5xx): the login can be tried again later. */
export class IssuerUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IssuerUnavailableError';
  }
}

/** The provider refused the code, or its answer failed a check: this login is over. */
export class LoginFailedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LoginFailedError';
  }
}

/** The ID token's claims that matter here. */
export interface IdentityClaims {
  sub: string;
  email: string | undefined;
  /** True only when the provider says so with a boolean true. */
  emailVerified: boolean;
}

export interface OidcClient {
  readonly issuerUrl: string;
  authorizationUrl(params: { state: string; nonce: string; codeVerifier: string }): Promise<URL>;
  /** Exchanges the code of the callback URL, checking state, nonce and PKCE; the ID token's claims. */
  exchange(callbackUrl: URL, checks: { state: string; nonce: string; codeVerifier: string }): Promise<IdentityClaims>;
}

export function createOidcClient(options: OidcClientOptions): OidcClient {
  const issuer = new URL(options.issuerUrl);
  const timeoutSeconds = Math.ceil((options.timeoutMs ?? 10_000) / 1000);
  // One discovery in flight at a time; a failure is not cached, so the next login tries again.
  let configuration: Promise<oidc.Configuration> | undefined;

  const discover = (): Promise<oidc.Configuration> => {
    configuration ??= oidc
      .discovery(issuer, options.clientId, options.clientSecret, undefined, {
        timeout: timeoutSeconds,
        // Plain http only for a provider on this machine (config refuses any other http issuer).
        ...(issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
      })
      .then((c) => {
        c.timeout = timeoutSeconds;
        return c;
      })
      .catch((err: unknown) => {
        configuration = undefined;
        throw new IssuerUnavailableError(`OpenID discovery at ${issuer.href} failed: ${describe(err)}`, {
          cause: err,
        });
      });
    return configuration;
  };

  return {
    issuerUrl: issuer.href,

    async authorizationUrl({ state, nonce, codeVerifier }) {
      const config = await discover();
      return oidc.buildAuthorizationUrl(config, {
        redirect_uri: options.redirectUri,
        scope: 'openid email',
        response_type: 'code',
        state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
      });
    },

    async exchange(callbackUrl, checks) {
      const config = await discover();
      let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
          pkceCodeVerifier: checks.codeVerifier,
          expectedState: checks.state,
          expectedNonce: checks.nonce,
          idTokenExpected: true,
        });
      } catch (err) {
        if (unreachable(err)) {
          throw new IssuerUnavailableError(`the token endpoint failed: ${describe(err)}`, { cause: err });
        }
        throw new LoginFailedError(describe(err), { cause: err });
      }
      const claims = tokens.claims();
      if (!claims) throw new LoginFailedError('the provider returned no ID token');
      return {
        sub: claims.sub,
        email: typeof claims.email === 'string' ? claims.email : undefined,
        emailVerified: claims.email_verified === true,
      };
    },
  };
}

/** A network failure, a timeout or a 5xx: nothing was decided about this login. */
function unreachable(err: unknown): boolean {
  if (err instanceof oidc.ResponseBodyError) return err.status >= 500;
  if (err instanceof oidc.ClientError) return err.cause instanceof Error && unreachable(err.cause);
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return true;
  return err instanceof TypeError && /fetch failed/i.test(err.message);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${typeof code === 'string' ? `${code}: ` : ''}${err.message}${cause}`;
}

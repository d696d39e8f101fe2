// Authenticates a pushed task before its body is read, in the four TASKS_AUTH modes.
// Every refusal names the check that failed (for the log line); the caller answers 401.
// A verified OIDC token is remembered (see TokenCache below), so the RS256 check runs once per
// token rather than once per request.
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWTHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import type { Clock } from '../clock.ts';
import type { TasksAuthMode } from '../config.ts';

export const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];
export const GOOGLE_JWKS_URL = 'https://www.googleapis.com/oauth2/v3/certs';

export type AuthFailure =
  | 'credentials-missing'
  | 'token-malformed'
  | 'algorithm-not-allowed'
  | 'signature-invalid'
  | 'key-unknown'
  | 'issuer-mismatch'
  | 'audience-mismatch'
  | 'expired'
  | 'not-yet-valid'
  | 'email-mismatch'
  | 'email-unverified'
  | 'jwks-unavailable'
  | 'secret-mismatch'
  | 'secret-not-accepted';

export type AuthResult =
  | { ok: true; method: 'oidc' | 'cloud-run-iam' | 'secret'; subject: string }
  | { ok: false; reason: AuthFailure; detail: string };

export interface PushAuthOptions {
  mode: TasksAuthMode;
  /** Exact `aud` every token must carry. */
  audience: string;
  /** The only `email` accepted. */
  invokerEmail: string;
  secret?: string | undefined;
  /** Accepted `iss` values. (Default: Google's two) */
  issuers?: readonly string[];
  /** Where the signing keys are. (Default: Google's JWKS) */
  jwksUrl?: string;
  clock: Clock;
  /** Seconds of clock skew tolerated on exp/nbf/iat. (Default: 30) */
  clockToleranceSeconds?: number;
  /** Verified OIDC tokens remembered at most; 0 turns the cache off. (Default: 1024) */
  tokenCacheSize?: number;
}

export interface PushAuthenticator {
  authenticate(headers: Record<string, string | string[] | undefined>): Promise<AuthResult>;
}

/** What the token cache holds now (for tests and benchmarks). */
export interface TokenCacheStats {
  /** Tokens remembered. */
  size: number;
  /** Requests answered from the cache, without the RS256 check. */
  hits: number;
}

/**
 * A verified token, remembered under the SHA-256 of the whole token string. Everything the full
 * check reads that does not depend on the time or on the key set is in the token string itself
 * (signature, alg, iss, aud, email, email_verified), so an identical string passes those checks
 * identically; what can change is checked again on every hit:
 * - the time: the entry serves only while now (the injected clock, in whole seconds as jose reads
 *   it) is before `exp`, with no tolerance, which is stricter than the full check (that accepts up
 *   to `exp` + tolerance); past `exp` the full check decides. An `nbf` is checked with the
 *   tolerance, exactly as the full check does, should the clock move back;
 * - the key: the entry keeps the very key object the signature was checked with, and a hit asks
 *   the JWKS for the token's key again, as the full check would (which also refetches a key set
 *   older than its maximum age, 10 minutes). jose builds new key objects whenever it refetches the
 *   key set, so any refetch (a rotation, a key removed, the age limit) makes every entry miss once
 *   and go through the full check, which refuses a token whose key is gone. Chosen over comparing
 *   kids: it cannot accept a key whose material changed under the same kid, and it needs no copy
 *   of the key set per request; the cost is one RS256 check per token after each refetch.
 * Refused tokens are not remembered. Bounded: at most `tokenCacheSize` entries, the least
 * recently used evicted first (a Map keeps insertion order; a hit moves its entry to the end).
 */
interface CachedToken {
  header: JWTHeaderParameters;
  key: unknown;
  exp: number;
  nbf: number | undefined;
  result: AuthResult & { ok: true };
}

const fail = (reason: AuthFailure, detail: string): AuthResult => ({ ok: false, reason, detail });

export function createPushAuthenticator(options: PushAuthOptions): PushAuthenticator & { stats(): TokenCacheStats } {
  const issuers = [...(options.issuers ?? GOOGLE_ISSUERS)];
  const tolerance = options.clockToleranceSeconds ?? 30;
  // jose caches the key set and, on an unknown kid, refetches once per 30 s cooldown (key rotation).
  const jwks = createRemoteJWKSet(new URL(options.jwksUrl ?? GOOGLE_JWKS_URL), {
    cooldownDuration: 30_000,
    cacheMaxAge: 10 * 60_000,
    timeoutDuration: 5_000,
  });
  const secretDigest = options.secret ? digest(options.secret) : undefined;
  const cacheMax = options.tokenCacheSize ?? 1024;
  const cache = new Map<string, CachedToken>();
  let hits = 0;
  const nowSeconds = () => Math.floor(options.clock.now() / 1000);

  const checkClaims = (payload: JWTPayload): AuthResult => {
    if (payload.email !== options.invokerEmail) {
      return fail(
        'email-mismatch',
        `email ${JSON.stringify(payload.email)} is not the invoker ${options.invokerEmail}`,
      );
    }
    if (payload.email_verified !== true) return fail('email-unverified', 'email_verified is not true');
    return { ok: true, method: 'oidc', subject: String(payload.email) };
  };

  /** The cached result when the entry is still good; undefined sends the token to the full check. */
  async function fromCache(cacheKey: string): Promise<AuthResult | undefined> {
    const entry = cache.get(cacheKey);
    if (!entry) return undefined;
    let key: unknown;
    try {
      key = await jwks(entry.header);
    } catch {
      key = undefined;
    }
    // Read after the key lookup (which may wait for a refetch): the time the answer is given.
    const now = nowSeconds();
    const live = cache.get(cacheKey) === entry;
    if (key !== entry.key || now >= entry.exp) {
      // Expired, or the key set was refetched since (rotation, removal, age): the full check decides.
      if (live) cache.delete(cacheKey);
      return undefined;
    }
    if (entry.nbf !== undefined && entry.nbf > now + tolerance) return undefined;
    if (live) {
      cache.delete(cacheKey);
      cache.set(cacheKey, entry);
    }
    hits++;
    return entry.result;
  }

  async function verifyOidc(token: string): Promise<AuthResult> {
    const cacheKey = cacheMax > 0 ? digest(token).toString('base64') : undefined;
    if (cacheKey) {
      const cached = await fromCache(cacheKey);
      if (cached) return cached;
    }
    // The key the signature is checked with: what the entry is tied to.
    let usedKey: unknown;
    const resolveKey = async (header: JWTHeaderParameters, input: Parameters<typeof jwks>[1]) => {
      usedKey = await jwks(header, input);
      return usedKey as Awaited<ReturnType<typeof jwks>>;
    };
    let result: AuthResult;
    let verified: { payload: JWTPayload; protectedHeader: JWTHeaderParameters };
    try {
      verified = await jwtVerify(token, resolveKey, {
        algorithms: ['RS256'],
        issuer: issuers,
        audience: options.audience,
        clockTolerance: tolerance,
        currentDate: new Date(options.clock.now()),
        requiredClaims: ['exp', 'iat'],
      });
      result = checkClaims(verified.payload);
    } catch (err) {
      return joseFailure(err);
    }
    const { exp, nbf } = verified.payload;
    if (cacheKey && result.ok && usedKey !== undefined && typeof exp === 'number' && nowSeconds() < exp) {
      if (cache.size >= cacheMax) cache.delete(cache.keys().next().value as string);
      cache.set(cacheKey, {
        header: verified.protectedHeader,
        key: usedKey,
        exp,
        nbf: typeof nbf === 'number' ? nbf : undefined,
        result,
      });
    }
    return result;
  }

  // Cloud Run (IAM) verified the signature and replaced it; the claims must still name us.
  function checkIamClaims(token: string): AuthResult {
    let payload: JWTPayload;
    try {
      decodeProtectedHeader(token);
      payload = decodeJwt(token);
    } catch {
      return fail('token-malformed', 'not a JWT');
    }
    const now = options.clock.now() / 1000;
    if (typeof payload.iss !== 'string' || !issuers.includes(payload.iss)) {
      return fail('issuer-mismatch', `iss ${JSON.stringify(payload.iss)} is not accepted`);
    }
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!aud.includes(options.audience)) return fail('audience-mismatch', `aud is not ${options.audience}`);
    if (typeof payload.exp !== 'number' || payload.exp + tolerance <= now) return fail('expired', 'exp has passed');
    if (typeof payload.nbf === 'number' && payload.nbf - tolerance > now) return fail('not-yet-valid', 'nbf is ahead');
    const claims = checkClaims(payload);
    return claims.ok ? { ...claims, method: 'cloud-run-iam' } : claims;
  }

  function checkSecret(given: string): AuthResult {
    if (!secretDigest) return fail('secret-not-accepted', 'X-Task-Secret is not accepted in this mode');
    // Both sides hashed first: equal lengths for timingSafeEqual whatever was sent.
    return timingSafeEqual(digest(given), secretDigest)
      ? { ok: true, method: 'secret', subject: 'task-secret' }
      : fail('secret-mismatch', 'X-Task-Secret does not match');
  }

  return {
    stats: () => ({ size: cache.size, hits }),
    async authenticate(headers) {
      const authorization = header(headers, 'authorization');
      const bearer = authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
      const secret = header(headers, 'x-task-secret');
      switch (options.mode) {
        case 'oidc':
          if (!bearer) return fail('credentials-missing', 'no Authorization: Bearer token');
          return verifyOidc(bearer);
        case 'cloud-run-iam':
          if (!bearer) return fail('credentials-missing', 'no Authorization: Bearer token');
          return checkIamClaims(bearer);
        case 'secret':
          if (secret === undefined) return fail('credentials-missing', 'no X-Task-Secret header');
          return checkSecret(secret);
        case 'oidc-or-secret': {
          if (bearer) {
            const viaToken = await verifyOidc(bearer);
            if (viaToken.ok || secret === undefined) return viaToken;
          }
          if (secret !== undefined) return checkSecret(secret);
          return fail('credentials-missing', 'neither a Bearer token nor X-Task-Secret');
        }
      }
    },
  };
}

function joseFailure(err: unknown): AuthResult {
  if (err instanceof errors.JWTExpired) return fail('expired', 'exp has passed');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return fail('issuer-mismatch', err.message);
    if (err.claim === 'aud') return fail('audience-mismatch', err.message);
    if (err.claim === 'nbf' || err.claim === 'iat') return fail('not-yet-valid', err.message);
    return fail('token-malformed', err.message);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return fail('algorithm-not-allowed', err.message);
  if (err instanceof errors.JWSSignatureVerificationFailed) return fail('signature-invalid', err.message);
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return fail('key-unknown', 'no key in the issuer JWKS matches the token');
  }
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
    return fail('jwks-unavailable', err.message);
  }
  if (err instanceof errors.JOSEError) return fail('token-malformed', err.message);
  return fail('jwks-unavailable', err instanceof Error ? err.message : String(err));
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

// The emulator's token issuer: an RSA key (kept in the data directory when there is one), the
// OIDC ID tokens it signs for tasks and jobs (RS256, Google's claim set), and the discovery
// document, JWKS and X.509 certificates a verifier reads.
import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type KeyObject, sign } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { selfSignedCertificate } from './x509.ts';

const KEY_FILE = 'signing-key.pem';
/** Google's ID tokens live one hour (exp − iat = 3600 in its samples). */
const TOKEN_LIFETIME_S = 3600;
/** A cached token is reused while it has at least this long to live, as Google's own token cache does. */
const MIN_REMAINING_S = 600;

export interface TokenRequest {
  serviceAccountEmail: string;
  audience: string;
  issuer: string;
  nowMs: number;
}

export class Signer {
  readonly kid: string;
  readonly #privateKey: KeyObject;
  readonly #publicJwk: Record<string, unknown>;
  #certificate: string | undefined;
  readonly #cache = new Map<string, { token: string; iat: number; exp: number }>();

  private constructor(privateKey: KeyObject) {
    this.#privateKey = privateKey;
    const publicKey = createPublicKey(privateKey);
    const jwk = publicKey.export({ format: 'jwk' }) as { n: string; e: string; kty: string };
    // RFC 7638 thumbprint: stable across restarts for a persisted key, so verifiers' caches stay valid.
    this.kid = createHash('sha256')
      .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
      .digest('hex')
      .slice(0, 40);
    this.#publicJwk = { kty: jwk.kty, n: jwk.n, e: jwk.e, alg: 'RS256', use: 'sig', kid: this.kid };
  }

  /** Loads the key from `dataDir`, or makes one (and saves it there when a directory is given). */
  static async load(dataDir: string | undefined): Promise<Signer> {
    const file = dataDir ? path.join(dataDir, KEY_FILE) : undefined;
    if (file) {
      const pem = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (pem) return new Signer(createPrivateKey(pem));
    }
    const privateKey = await new Promise<KeyObject>((resolve, reject) =>
      generateKeyPair('rsa', { modulusLength: 2048 }, (err, _pub, priv) => (err ? reject(err) : resolve(priv))),
    );
    if (file && dataDir) {
      await mkdir(dataDir, { recursive: true });
      const tmp = `${file}.tmp`;
      await writeFile(tmp, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, file);
    }
    return new Signer(privateKey);
  }

  /** An ID token as Google mints for a service account: iss, aud, email, email_verified, sub, azp, iat, exp. */
  idToken(request: TokenRequest): string {
    const now = Math.floor(request.nowMs / 1000);
    const key = `${request.issuer}\n${request.serviceAccountEmail}\n${request.audience}`;
    const cached = this.#cache.get(key);
    if (cached && cached.iat <= now && cached.exp - now >= MIN_REMAINING_S) return cached.token;
    const sub = numericId(request.serviceAccountEmail);
    const token = this.#sign({
      aud: request.audience,
      azp: sub,
      email: request.serviceAccountEmail,
      email_verified: true,
      exp: now + TOKEN_LIFETIME_S,
      iat: now,
      iss: request.issuer,
      sub,
    });
    if (this.#cache.size > 1000) this.#cache.clear();
    this.#cache.set(key, { token, iat: now, exp: now + TOKEN_LIFETIME_S });
    return token;
  }

  /**
   * Stands in for an OAuth access token (oauthToken targets): real ones are opaque and only
   * Google APIs accept them, so a signed JWT naming the account and scope is as good locally.
   */
  accessToken(request: { serviceAccountEmail: string; scope: string; issuer: string; nowMs: number }): string {
    const now = Math.floor(request.nowMs / 1000);
    return this.#sign({
      iss: request.issuer,
      sub: numericId(request.serviceAccountEmail),
      email: request.serviceAccountEmail,
      scope: request.scope,
      iat: now,
      exp: now + TOKEN_LIFETIME_S,
    });
  }

  jwks(): { keys: Record<string, unknown>[] } {
    return { keys: [this.#publicJwk] };
  }

  /**
   * Google's oauth2/v1/certs shape: { kid: PEM X.509 certificate }, here self-signed for the
   * signing key (x509.ts), made once.
   */
  pemCerts(): Record<string, string> {
    this.#certificate ??= selfSignedCertificate(this.#privateKey);
    return { [this.kid]: this.#certificate };
  }

  discovery(issuer: string, baseUrl: string): Record<string, unknown> {
    return {
      issuer,
      jwks_uri: `${baseUrl}/jwks`,
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      claims_supported: ['aud', 'azp', 'email', 'email_verified', 'exp', 'iat', 'iss', 'sub'],
    };
  }

  #sign(payload: Record<string, unknown>): string {
    const header = b64url(JSON.stringify({ alg: 'RS256', kid: this.kid, typ: 'JWT' }));
    const body = b64url(JSON.stringify(payload));
    const signature = sign('sha256', Buffer.from(`${header}.${body}`), this.#privateKey).toString('base64url');
    return `${header}.${body}.${signature}`;
  }
}

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** A stable 21-digit "unique ID" for an e-mail, like a service account's numeric sub/azp. */
export function numericId(email: string): string {
  const digest = createHash('sha256').update(email).digest();
  return `1${(digest.readBigUInt64BE(0) % 10n ** 20n).toString().padStart(20, '0')}`;
}

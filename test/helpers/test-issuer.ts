// A local OIDC token issuer standing in for Google's (which tests cannot reach): an RSA key, a
// JWKS served on loopback, and tokens shaped like the ones Cloud Tasks sends.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';

export const INVOKER = 'tasks-invoker@local.iam.gserviceaccount.com';

export interface TestIssuer {
  issuer: string;
  jwksUrl: string;
  /** A token Cloud Tasks would send; claims and lifetime can be overridden. */
  token(
    claims?: Partial<JWTPayload> & Record<string, unknown>,
    options?: { nowSeconds?: number; kid?: string },
  ): Promise<string>;
  /** The same claims signed with a key that is not in the JWKS. */
  tokenFromUnknownKey(claims?: Record<string, unknown>, nowSeconds?: number): Promise<string>;
  /** The public key as PEM (for the HS256-with-public-key attack). */
  publicKeyPem: string;
  jwksRequests(): number;
  /** Key rotation: the JWKS now holds only a new key (kid "test-key-2"), and tokens are signed with it. */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestIssuer(options: { audience: string; nowSeconds: () => number }): Promise<TestIssuer> {
  let { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  let currentKid = 'test-key-1';
  const other = await generateKeyPair('RS256', { extractable: true });
  let jwk = { ...(await exportJWK(publicKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
  const { createPublicKey } = await import('node:crypto');
  const publicKeyPem = createPublicKey({ key: await exportJWK(publicKey), format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    if (req.url === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    } else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const issuer = `http://127.0.0.1:${port}`;
  const claimsFor = (claims: Record<string, unknown>, now: number) => ({
    iss: issuer,
    aud: options.audience,
    email: INVOKER,
    email_verified: true,
    sub: '112233445566778899',
    azp: '112233445566778899',
    iat: now,
    exp: now + 3600,
    ...claims,
  });
  const sign = (claims: Record<string, unknown>, key: Parameters<SignJWT['sign']>[0], kid: string) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(key);
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    publicKeyPem,
    token: (claims = {}, o = {}) =>
      sign(claimsFor(claims, o.nowSeconds ?? options.nowSeconds()), privateKey, o.kid ?? currentKid),
    tokenFromUnknownKey: (claims = {}, now) =>
      sign(claimsFor(claims, now ?? options.nowSeconds()), other.privateKey, 'test-key-1'),
    jwksRequests: () => requests,
    async rotate() {
      ({ privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true }));
      currentKid = 'test-key-2';
      jwk = { ...(await exportJWK(publicKey)), kid: currentKid, alg: 'RS256', use: 'sig' };
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

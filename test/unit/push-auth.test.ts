// The push authenticator's checks that need no signing keys, called directly: the claims in
// cloud-run-iam mode (Cloud Run verified the signature and removed it), the X-Task-Secret check,
// how the Authorization header is read, and which credential wins in oidc-or-secret. The RS256
// path against a JWKS is test/integration/push-auth.test.ts.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { TestClock } from '../../src/clock.ts';
import type { TasksAuthMode } from '../../src/config.ts';
import { type AuthResult, createPushAuthenticator } from '../../src/tasks/push-auth.ts';
import { INVOKER as INVOKER_TEST, startTestIssuer } from '../helpers/test-issuer.ts';

const AUDIENCE = 'https://svc.example.test/';
const INVOKER = 'tasks-invoker@acme.iam.gserviceaccount.com';
const SECRET = 'k'.repeat(40);
const clock = new TestClock('2026-06-01T00:00:00.000Z');
const now = clock.now() / 1000;

const authenticator = (mode: TasksAuthMode, secret?: string) =>
  createPushAuthenticator({
    mode,
    audience: AUDIENCE,
    invokerEmail: INVOKER,
    secret,
    clock,
    // Never reached by these tests; a closed port should anything try.
    jwksUrl: 'http://127.0.0.1:9/certs',
  });

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A token as Cloud Run forwards it: header and claims intact, the signature replaced. */
function stripped(claims: Record<string, unknown> = {}, header: unknown = { alg: 'RS256', kid: 'k1', typ: 'JWT' }) {
  const payload = {
    iss: 'https://accounts.google.com',
    aud: AUDIENCE,
    email: INVOKER,
    email_verified: true,
    iat: now - 10,
    exp: now + 3600,
    ...claims,
  };
  return `${typeof header === 'string' ? header : b64(header)}.${b64(payload)}.SIGNATURE_REMOVED_BY_GOOGLE`;
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const reasonOf = (r: AuthResult) => (r.ok ? 'ok' : r.reason);

test('cloud-run-iam: the claims are still checked, each refusal naming its check', async () => {
  const iam = authenticator('cloud-run-iam');
  const check = (claims: Record<string, unknown>) => iam.authenticate(bearer(stripped(claims)));
  assert.deepEqual(await check({}), { ok: true, method: 'cloud-run-iam', subject: INVOKER });
  assert.deepEqual(await check({ iss: 'accounts.google.com' }), {
    ok: true,
    method: 'cloud-run-iam',
    subject: INVOKER,
  });
  assert.deepEqual(await check({ iss: 'https://evil.example' }), {
    ok: false,
    reason: 'issuer-mismatch',
    detail: 'iss "https://evil.example" is not accepted',
  });
  assert.equal((await check({ iss: undefined })).ok, false);
  assert.deepEqual(await check({ iss: ['https://accounts.google.com'] }), {
    ok: false,
    reason: 'issuer-mismatch',
    detail: 'iss ["https://accounts.google.com"] is not accepted',
  });
  // aud: a string or an array that contains ours.
  assert.equal((await check({ aud: ['other', AUDIENCE] })).ok, true);
  assert.deepEqual(await check({ aud: ['other'] }), {
    ok: false,
    reason: 'audience-mismatch',
    detail: `aud is not ${AUDIENCE}`,
  });
  assert.equal((await check({ aud: `${AUDIENCE}x` })).ok, false);
  // exp with the 30 s tolerance: 29 s past is accepted, 30 s past is not; no exp is refused.
  assert.equal((await check({ exp: now - 29 })).ok, true);
  assert.deepEqual(await check({ exp: now - 30 }), { ok: false, reason: 'expired', detail: 'exp has passed' });
  assert.deepEqual(await check({ exp: undefined }), { ok: false, reason: 'expired', detail: 'exp has passed' });
  assert.deepEqual(await check({ exp: String(now + 3600) }), {
    ok: false,
    reason: 'expired',
    detail: 'exp has passed',
  });
  // nbf with the same tolerance.
  assert.equal((await check({ nbf: now + 30 })).ok, true);
  assert.deepEqual(await check({ nbf: now + 31 }), { ok: false, reason: 'not-yet-valid', detail: 'nbf is ahead' });
  // The account and its verified e-mail.
  assert.deepEqual(await check({ email: 'x@y.iam.gserviceaccount.com' }), {
    ok: false,
    reason: 'email-mismatch',
    detail: `email "x@y.iam.gserviceaccount.com" is not the invoker ${INVOKER}`,
  });
  assert.deepEqual(await check({ email_verified: 'true' }), {
    ok: false,
    reason: 'email-unverified',
    detail: 'email_verified is not true',
  });
  assert.equal((await check({ email_verified: undefined })).ok, false);
});

test('cloud-run-iam: a token that is not a JWT, or whose header is not JSON, is malformed', async () => {
  const iam = authenticator('cloud-run-iam');
  const malformed = { ok: false, reason: 'token-malformed', detail: 'not a JWT' };
  assert.deepEqual(await iam.authenticate(bearer('not-a-jwt')), malformed);
  assert.deepEqual(await iam.authenticate(bearer(stripped({}, 'bm90IGpzb24'))), malformed);
  assert.deepEqual(await iam.authenticate({}), {
    ok: false,
    reason: 'credentials-missing',
    detail: 'no Authorization: Bearer token',
  });
  // cloud-run-iam reads no secret.
  assert.equal((await iam.authenticate({ 'x-task-secret': SECRET })).ok, false);
});

test('the Authorization header: "Bearer <token>", any case, surrounding spaces, one token only', async () => {
  const iam = authenticator('cloud-run-iam');
  const token = stripped();
  const accepted = { ok: true, method: 'cloud-run-iam', subject: INVOKER };
  const missing = { ok: false, reason: 'credentials-missing', detail: 'no Authorization: Bearer token' };
  assert.deepEqual(await iam.authenticate({ authorization: `bearer   ${token}  ` }), accepted);
  assert.deepEqual(await iam.authenticate({ authorization: [`Bearer ${token}`, 'Bearer other'] }), accepted);
  assert.deepEqual(await iam.authenticate({ authorization: `Basic ${token}` }), missing);
  assert.deepEqual(await iam.authenticate({ authorization: `xBearer ${token}` }), missing);
  assert.deepEqual(await iam.authenticate({ authorization: `Bearer ${token} extra` }), missing);
  assert.deepEqual(await iam.authenticate({ authorization: 'Bearer ' }), missing);
  // oidc mode reads the header the same way.
  const oidc = authenticator('oidc');
  assert.deepEqual(await oidc.authenticate({}), missing);
  assert.deepEqual(await oidc.authenticate({ 'x-task-secret': SECRET }), missing);
  assert.equal(reasonOf(await oidc.authenticate(bearer('not-a-jwt'))), 'token-malformed');
});

test('secret mode: the configured secret only, whatever its length; no token instead', async () => {
  const auth = authenticator('secret', SECRET);
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': SECRET }), {
    ok: true,
    method: 'secret',
    subject: 'task-secret',
  });
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': [SECRET, 'other'] }), {
    ok: true,
    method: 'secret',
    subject: 'task-secret',
  });
  const mismatch = { ok: false, reason: 'secret-mismatch', detail: 'X-Task-Secret does not match' };
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': `${SECRET.slice(1)}x` }), mismatch);
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': '' }), mismatch);
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': SECRET.slice(2) }), mismatch);
  const missing = { ok: false, reason: 'credentials-missing', detail: 'no X-Task-Secret header' };
  assert.deepEqual(await auth.authenticate({}), missing);
  assert.deepEqual(await auth.authenticate(bearer(stripped())), missing);
});

test('oidc-or-secret: a good token or the secret; a bad token falls back to a secret when one is sent', async () => {
  const auth = authenticator('oidc-or-secret', SECRET);
  const viaSecret = { ok: true, method: 'secret', subject: 'task-secret' };
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': SECRET }), viaSecret);
  assert.deepEqual(await auth.authenticate({ ...bearer('not-a-jwt'), 'x-task-secret': SECRET }), viaSecret);
  assert.deepEqual(await auth.authenticate({ ...bearer('not-a-jwt'), 'x-task-secret': 'wrong' }), {
    ok: false,
    reason: 'secret-mismatch',
    detail: 'X-Task-Secret does not match',
  });
  // The token's own refusal when no secret came with it.
  assert.equal(reasonOf(await auth.authenticate(bearer('not-a-jwt'))), 'token-malformed');
  assert.deepEqual(await auth.authenticate({ 'x-task-secret': 'wrong' }), {
    ok: false,
    reason: 'secret-mismatch',
    detail: 'X-Task-Secret does not match',
  });
  assert.deepEqual(await auth.authenticate({}), {
    ok: false,
    reason: 'credentials-missing',
    detail: 'neither a Bearer token nor X-Task-Secret',
  });
  // Without a configured secret, X-Task-Secret is never accepted, whatever it is.
  const noSecret = authenticator('oidc-or-secret');
  assert.deepEqual(await noSecret.authenticate({ 'x-task-secret': '' }), {
    ok: false,
    reason: 'secret-not-accepted',
    detail: 'X-Task-Secret is not accepted in this mode',
  });
  assert.deepEqual(await noSecret.authenticate({ 'x-task-secret': SECRET }), {
    ok: false,
    reason: 'secret-not-accepted',
    detail: 'X-Task-Secret is not accepted in this mode',
  });
});

test('oidc: a token verified against the JWKS names the method and the invoker', async (ctx) => {
  const issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds: () => Math.floor(clock.now() / 1000) });
  ctx.after(() => issuer.close());
  const oidc = createPushAuthenticator({
    mode: 'oidc',
    audience: AUDIENCE,
    invokerEmail: INVOKER_TEST,
    issuers: [issuer.issuer],
    jwksUrl: issuer.jwksUrl,
    clock,
  });
  assert.deepEqual(await oidc.authenticate(bearer(await issuer.token())), {
    ok: true,
    method: 'oidc',
    subject: INVOKER_TEST,
  });
});

test("oidc: jose's refusals become named reasons (no iat, exp missing, key set invalid or unreachable)", async (ctx) => {
  const issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds: () => Math.floor(clock.now() / 1000) });
  ctx.after(() => issuer.close());
  const nowS = Math.floor(clock.now() / 1000);
  const oidc = (jwksUrl: string) =>
    createPushAuthenticator({
      mode: 'oidc',
      audience: AUDIENCE,
      invokerEmail: INVOKER_TEST,
      issuers: [issuer.issuer],
      jwksUrl,
      clock,
    });
  const auth = oidc(issuer.jwksUrl);
  const reasonFor = async (claims: Record<string, unknown>) =>
    reasonOf(await auth.authenticate(bearer(await issuer.token(claims))));
  // jose names the claim: iat (required here) and nbf are the token's start.
  assert.equal(await reasonFor({ iat: undefined }), 'not-yet-valid');
  assert.equal(await reasonFor({ nbf: nowS + 3600 }), 'not-yet-valid');
  assert.equal(await reasonFor({ exp: undefined }), 'token-malformed');
  assert.equal(await reasonFor({ exp: nowS - 3600 }), 'expired');

  // A key set that is not one, and one that cannot be reached: the keys are unavailable, not the
  // token malformed (Cloud Tasks retries a 401 either way; the log line must say which).
  const server = createServer((_req, res) => res.setHeader('content-type', 'application/json').end('{"keys":"no"}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  ctx.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const token = await issuer.token();
  assert.equal(reasonOf(await oidc(`http://127.0.0.1:${port}/certs`).authenticate(bearer(token))), 'jwks-unavailable');
  const closed = await oidc('http://127.0.0.1:9/certs').authenticate(bearer(token));
  assert.equal(reasonOf(closed), 'jwks-unavailable');
});

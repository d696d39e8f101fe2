// The verified-token cache of push authentication: a token's RS256 check runs once, and the cache
// never accepts a token that the full check would refuse (expired, its key gone from the JWKS, a
// different token string, the clock moved back before nbf), and never grows past its bound.
// "The RS256 check ran" is observed on WebCrypto itself (crypto.subtle.verify, which jose calls),
// so the test does not depend on the authenticator's own counters.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, mock, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { z } from 'zod';
import { TestClock } from '../../src/clock.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createPushAuthenticator, type PushAuthOptions } from '../../src/tasks/push-auth.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { INVOKER, startTestIssuer, type TestIssuer } from '../helpers/test-issuer.ts';

const AUDIENCE = 'https://svc.example.run.app';
const SECRET = 's'.repeat(40);

/** Counts RS256 signature checks (jose verifies through WebCrypto). */
const verify = mock.method(crypto.subtle, 'verify');
const rs256Checks = () => verify.mock.callCount();

describe('the verified-token cache', () => {
  let clock: TestClock;
  let issuer: TestIssuer;
  before(async () => {
    clock = new TestClock('2026-03-01T12:00:00.000Z');
    issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds: () => now() });
  });
  after(() => issuer.close());
  beforeEach(() => clock.set('2026-03-01T12:00:00.000Z'));

  const now = () => Math.floor(clock.now() / 1000);
  const authenticator = (o: Partial<PushAuthOptions> = {}) =>
    createPushAuthenticator({
      mode: 'oidc',
      audience: AUDIENCE,
      invokerEmail: INVOKER,
      issuers: [issuer.issuer],
      jwksUrl: issuer.jwksUrl,
      clock,
      ...o,
    });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  test('the second request with the same token runs no RS256 check; another token does', async () => {
    const auth = authenticator();
    const token = await issuer.token();
    const checks = rs256Checks();
    assert.deepEqual(await auth.authenticate(bearer(token)), { ok: true, method: 'oidc', subject: INVOKER });
    assert.equal(rs256Checks(), checks + 1);
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await auth.authenticate(bearer(token)), { ok: true, method: 'oidc', subject: INVOKER });
    }
    assert.equal(rs256Checks(), checks + 1, 'a cached token was verified again');
    assert.deepEqual(auth.stats(), { size: 1, hits: 5 });
    assert.equal((await auth.authenticate(bearer(await issuer.token({ jti: 'other' })))).ok, true);
    assert.equal(rs256Checks(), checks + 2);
    assert.equal(auth.stats().size, 2);
  });

  test('with the cache off (tokenCacheSize 0) every request is verified', async () => {
    const auth = authenticator({ tokenCacheSize: 0 });
    const token = await issuer.token();
    const checks = rs256Checks();
    for (let i = 0; i < 3; i++) assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal(rs256Checks(), checks + 3);
    assert.deepEqual(auth.stats(), { size: 0, hits: 0 });
  });

  test('an entry is dead at exp, and an expired cached token is refused', async () => {
    const auth = authenticator();
    const token = await issuer.token({ exp: now() + 60 });
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    const checks = rs256Checks();
    clock.advance(59_999);
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal(rs256Checks(), checks, 'one second before exp, the cache answers');
    // At exp the cache no longer answers: the full check does, which still allows its 30 s of
    // clock tolerance (and does not remember a token past its exp).
    clock.advance(1);
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal(rs256Checks(), checks + 1);
    assert.equal(auth.stats().size, 0);
    // Past the tolerance, refused, as the full check refuses it.
    clock.advance(30_000);
    const refused = await auth.authenticate(bearer(token));
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.reason, 'expired');
  });

  test('an expired cached token is refused when nothing else asked in between', async () => {
    const auth = authenticator();
    const token = await issuer.token({ exp: now() + 60 });
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal(auth.stats().size, 1);
    clock.advance(60_000 + 30_000);
    const refused = await auth.authenticate(bearer(token));
    assert.deepEqual(refused.ok ? refused : refused.reason, 'expired');
    assert.equal(auth.stats().size, 0);
  });

  test('a cached token is refused if the clock goes back before its nbf (as the full check would)', async () => {
    const auth = authenticator();
    const token = await issuer.token({ nbf: now() });
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    clock.advance(-31_000);
    const refused = await auth.authenticate(bearer(token));
    assert.deepEqual(refused.ok ? refused : refused.reason, 'not-yet-valid');
  });

  test('the key is the whole token: a cached payload with another signature is refused', async () => {
    const auth = authenticator();
    const token = await issuer.token();
    assert.equal((await auth.authenticate(bearer(token))).ok, true);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
    const forged = await auth.authenticate(bearer(`${header}.${payload}.${flipped}`));
    assert.deepEqual(forged.ok ? forged : forged.reason, 'signature-invalid');
    // And a signed token that differs in one claim is checked on its own.
    const other = await auth.authenticate(bearer(await issuer.token({ aud: 'https://other.run.app' })));
    assert.deepEqual(other.ok ? other : other.reason, 'audience-mismatch');
    const unverified = await auth.authenticate(bearer(await issuer.token({ email_verified: false })));
    assert.deepEqual(unverified.ok ? unverified : unverified.reason, 'email-unverified');
    assert.equal(auth.stats().size, 1, 'refused tokens are not remembered');
  });

  test('the cache is bounded: the least recently used token is evicted', async () => {
    const auth = authenticator({ tokenCacheSize: 3 });
    const tokens = await Promise.all([0, 1, 2, 3, 4].map((i) => issuer.token({ jti: `bounded-${i}` })));
    for (const token of tokens.slice(0, 3)) assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal((await auth.authenticate(bearer(tokens[0]!))).ok, true); // 0 is now the most recent
    for (const token of tokens.slice(3)) assert.equal((await auth.authenticate(bearer(token))).ok, true);
    assert.equal(auth.stats().size, 3);
    const checks = rs256Checks();
    for (const i of [0, 3, 4]) assert.equal((await auth.authenticate(bearer(tokens[i]!))).ok, true);
    assert.equal(rs256Checks(), checks, 'tokens 0, 3 and 4 were still cached');
    assert.equal((await auth.authenticate(bearer(tokens[1]!))).ok, true);
    assert.equal(rs256Checks(), checks + 1, 'token 1 was evicted');
    assert.equal(auth.stats().size, 3);
    // Many more tokens than the bound: the size stays at the bound.
    for (let i = 0; i < 20; i++) await auth.authenticate(bearer(await issuer.token({ jti: `flood-${i}` })));
    assert.equal(auth.stats().size, 3);
  });

  test('X-Task-Secret modes: a secret is never cached, and a cached token does not stand in for one', async () => {
    const token = await issuer.token();
    const secretOnly = authenticator({ mode: 'secret', secret: SECRET });
    for (let i = 0; i < 2; i++) {
      const r = await secretOnly.authenticate(bearer(token));
      assert.deepEqual(r.ok ? r : r.reason, 'credentials-missing');
    }
    assert.deepEqual(await secretOnly.authenticate({ 'x-task-secret': SECRET }), {
      ok: true,
      method: 'secret',
      subject: 'task-secret',
    });
    const wrong = await secretOnly.authenticate({ 'x-task-secret': 'nope' });
    assert.deepEqual(wrong.ok ? wrong : wrong.reason, 'secret-mismatch');
    assert.deepEqual(secretOnly.stats(), { size: 0, hits: 0 });

    const either = authenticator({ mode: 'oidc-or-secret', secret: SECRET });
    assert.equal((await either.authenticate(bearer(token))).ok, true);
    assert.equal((await either.authenticate(bearer(token))).ok, true);
    assert.equal(either.stats().hits, 1);
    const viaSecret = await either.authenticate({ 'x-task-secret': SECRET });
    assert.equal(viaSecret.ok && viaSecret.method, 'secret');
    const badSecret = await either.authenticate({ 'x-task-secret': 'nope' });
    assert.deepEqual(badSecret.ok ? badSecret : badSecret.reason, 'secret-mismatch');
  });
});

describe('the cache and the JWKS', () => {
  test('a cached token whose key was removed from the JWKS is refused once the JWKS is refetched', async (ctx) => {
    // jose's key-set age and refetch cooldown read Date.now(): the test runner's mock clock moves it.
    ctx.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const clock = new TestClock('2026-03-01T12:00:00.000Z');
    const nowSeconds = () => Math.floor(clock.now() / 1000);
    const issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds });
    try {
      const auth = createPushAuthenticator({
        mode: 'oidc',
        audience: AUDIENCE,
        invokerEmail: INVOKER,
        issuers: [issuer.issuer],
        jwksUrl: issuer.jwksUrl,
        clock,
      });
      const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
      const old = await issuer.token();
      assert.equal((await auth.authenticate(bearer(old))).ok, true);
      assert.equal((await auth.authenticate(bearer(old))).ok, true);
      assert.equal(auth.stats().hits, 1);
      assert.equal(issuer.jwksRequests(), 1);

      // The issuer drops key 1; until the JWKS is fetched again, nothing can know it.
      await issuer.rotate();
      ctx.mock.timers.tick(31_000);
      // A token with the new key makes the authenticator refetch (past the 30 s cooldown).
      assert.equal((await auth.authenticate(bearer(await issuer.token()))).ok, true);
      assert.equal(issuer.jwksRequests(), 2);
      // The old token is still within its exp and still in the cache, but its key is gone.
      const refused = await auth.authenticate(bearer(old));
      assert.deepEqual(refused.ok ? refused : refused.reason, 'key-unknown');
      assert.equal(auth.stats().size, 1, 'only the new token remains');
    } finally {
      await issuer.close();
    }
  });

  test('a cached token is checked again once the JWKS is older than its maximum age, and refused if its key is gone', async (ctx) => {
    ctx.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const clock = new TestClock('2026-03-01T12:00:00.000Z');
    const issuer = await startTestIssuer({ audience: AUDIENCE, nowSeconds: () => Math.floor(clock.now() / 1000) });
    try {
      const auth = createPushAuthenticator({
        mode: 'oidc',
        audience: AUDIENCE,
        invokerEmail: INVOKER,
        issuers: [issuer.issuer],
        jwksUrl: issuer.jwksUrl,
        clock,
      });
      const bearer = { authorization: `Bearer ${await issuer.token()}` };
      assert.equal((await auth.authenticate(bearer)).ok, true);
      // Unchanged key set, refetched for age: the token is verified once more and cached again.
      ctx.mock.timers.tick(10 * 60_000 + 1);
      const checks = rs256Checks();
      assert.equal((await auth.authenticate(bearer)).ok, true);
      assert.equal(issuer.jwksRequests(), 2);
      assert.equal(rs256Checks(), checks + 1);
      assert.equal((await auth.authenticate(bearer)).ok, true);
      assert.equal(rs256Checks(), checks + 1);
      // The key removed, and no other token to trigger a refetch: the age limit does it.
      await issuer.rotate();
      ctx.mock.timers.tick(10 * 60_000 + 1);
      const refused = await auth.authenticate(bearer);
      assert.deepEqual(refused.ok ? refused : refused.reason, 'key-unknown');
      assert.equal(issuer.jwksRequests(), 3);
      assert.equal(auth.stats().size, 0);
    } finally {
      await issuer.close();
    }
  });
});

describe('the cache and a key replaced under the same kid', () => {
  test('a cached token signed by the old key material is refused once the JWKS serves new material under its kid', async (ctx) => {
    ctx.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const clock = new TestClock('2026-03-01T12:00:00.000Z');
    const iat = Math.floor(clock.now() / 1000);
    const first = await generateKeyPair('RS256');
    const second = await generateKeyPair('RS256');
    let served = { ...(await exportJWK(first.publicKey)), kid: 'same', alg: 'RS256', use: 'sig' };
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [served] }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const issuerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const auth = createPushAuthenticator({
        mode: 'oidc',
        audience: AUDIENCE,
        invokerEmail: INVOKER,
        issuers: [issuerUrl],
        jwksUrl: `${issuerUrl}/jwks`,
        clock,
      });
      const token = await new SignJWT({ iss: issuerUrl, aud: AUDIENCE, email: INVOKER, email_verified: true })
        .setProtectedHeader({ alg: 'RS256', kid: 'same', typ: 'JWT' })
        .setIssuedAt(iat)
        .setExpirationTime(iat + 3600)
        .sign(first.privateKey);
      const bearer = { authorization: `Bearer ${token}` };
      assert.equal((await auth.authenticate(bearer)).ok, true);
      assert.equal((await auth.authenticate(bearer)).ok, true);
      assert.equal(auth.stats().hits, 1);
      // Same kid, other key: a cache keyed on the kid alone would still accept the token.
      served = { ...(await exportJWK(second.publicKey)), kid: 'same', alg: 'RS256', use: 'sig' };
      ctx.mock.timers.tick(10 * 60_000 + 1);
      const refused = await auth.authenticate(bearer);
      assert.deepEqual(refused.ok ? refused : refused.reason, 'signature-invalid');
      assert.equal(auth.stats().size, 0);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe(`the push route with the cache (${testDbKind})`, () => {
  const echo = defineTask({
    name: 'test.echo',
    queue: 'q',
    payload: z.object({ n: z.number() }),
    handler: async () => ({}),
  });
  const registry = createRegistry({ tasks: [echo], queues: [{ name: 'q' }], schedules: [] });

  test('deliveries with one token: one RS256 check, every one run; an expired token is refused', async () => {
    const t = await buildTestApp({ registry });
    try {
      const token = await t.issuer.token({ exp: Math.floor(t.clock.now() / 1000) + 600 });
      const checks = rs256Checks();
      for (let i = 0; i < 4; i++) {
        const r = await push(t.app, t.issuer, 'test.echo', { n: i }, { token, taskName: `cached-${i}` });
        assert.equal(r.status, 200);
        assert.equal(r.outcome, 'succeeded');
      }
      assert.equal(rs256Checks(), checks + 1);
      t.clock.advance(600_000 + 30_000);
      const late = await push(t.app, t.issuer, 'test.echo', { n: 9 }, { token, taskName: 'cached-late' });
      assert.equal(late.status, 401);
      const { rows } = await t.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM task_runs WHERE cloud_task_name = 'cached-late'",
      );
      assert.equal(rows[0]!.n, 0);
    } finally {
      await t.close();
    }
  });
});

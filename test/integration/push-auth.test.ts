import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { z } from 'zod';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { INVOKER } from '../helpers/test-issuer.ts';

let handled = 0;
const echo = defineTask({
  name: 'test.echo',
  queue: 'q',
  payload: z.object({ n: z.number() }),
  async handler() {
    handled++;
    return {};
  },
});
const registry = createRegistry({ tasks: [echo], queues: [{ name: 'q' }], schedules: [] });
const SECRET = 's'.repeat(40);
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe(`push authentication (${testDbKind})`, () => {
  let t: TestApp;
  let taskNumber = 0;
  before(async () => {
    t = await buildTestApp({ registry });
  });
  after(() => t.close());

  const runs = async () => (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM task_runs')).rows[0]!.n;
  const now = () => Math.floor(t.clock.now() / 1000);

  /** Pushes with these credentials and asserts a 401 that recorded nothing and ran nothing. */
  async function refused(reason: string, token: string | null, headers: Record<string, string> = {}) {
    const before = { runs: await runs(), handled, logs: t.logs.lines.length };
    const r = await push(t.app, t.issuer, 'test.echo', { n: 1 }, { token, headers, taskName: `t${++taskNumber}` });
    assert.equal(r.status, 401, `${reason}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'UNAUTHENTICATED');
    assert.equal(await runs(), before.runs, `${reason}: a run was recorded`);
    assert.equal(handled, before.handled);
    const logged = t.logs.lines.slice(before.logs).find((l) => String(l.message).startsWith('task push refused'));
    assert.equal(logged?.authFailure, reason, JSON.stringify(logged));
  }

  test('a valid token from the invoker account is accepted', async () => {
    const r = await push(t.app, t.issuer, 'test.echo', { n: 1 }, { taskName: 'ok-1' });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'succeeded');
  });

  test('no token', () => refused('credentials-missing', null));
  test('a malformed token', () => refused('token-malformed', 'not.a.jwt'));
  test('alg: none', () =>
    refused(
      'algorithm-not-allowed',
      `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: t.issuer.issuer, aud: t.config.tasks.oidcAudience, email: 'tasks-invoker@local.iam.gserviceaccount.com', email_verified: true, iat: now(), exp: now() + 60 })}.`,
    ));
  test('HS256 signed with the issuer public key', async () => {
    const token = await new SignJWT({
      iss: t.issuer.issuer,
      aud: t.config.tasks.oidcAudience,
      email: 'tasks-invoker@local.iam.gserviceaccount.com',
      email_verified: true,
      iat: now(),
      exp: now() + 3600,
    })
      .setProtectedHeader({ alg: 'HS256', kid: 'test-key-1' })
      .sign(new TextEncoder().encode(t.issuer.publicKeyPem));
    await refused('algorithm-not-allowed', token);
  });
  test('a valid signature from a key not in the JWKS', async () =>
    refused('signature-invalid', await t.issuer.tokenFromUnknownKey()));
  test('a kid the JWKS does not have', async () =>
    refused('key-unknown', await t.issuer.token({}, { kid: 'rotated-away' })));
  test('the wrong issuer', async () =>
    refused('issuer-mismatch', await t.issuer.token({ iss: 'https://accounts.google.com' })));
  test('the wrong audience', async () =>
    refused('audience-mismatch', await t.issuer.token({ aud: 'https://other.run.app' })));
  test('the task URL with a query string as audience when the audience is the service root', async () =>
    refused('audience-mismatch', await t.issuer.token({ aud: `${t.config.tasks.oidcAudience}/tasks/test.echo?x=1` })));
  test('another service account', async () =>
    refused('email-mismatch', await t.issuer.token({ email: 'someone@evil.iam.gserviceaccount.com' })));
  test('an unverified e-mail', async () =>
    refused('email-unverified', await t.issuer.token({ email_verified: false })));
  test('an expired token', async () => refused('expired', await t.issuer.token({}, { nowSeconds: now() - 7200 })));
  test('a token not valid yet', async () => refused('not-yet-valid', await t.issuer.token({ nbf: now() + 600 })));
  test('a secret when the mode is oidc', () => refused('credentials-missing', null, { 'x-task-secret': SECRET }));
  test('a token expired by less than the 30 s tolerance is still accepted', async () => {
    const token = await t.issuer.token({ exp: now() - 10 });
    const r = await push(t.app, t.issuer, 'test.echo', { n: 1 }, { token, taskName: 'tolerance-1' });
    assert.equal(r.status, 200);
  });
});

describe(`signing keys (${testDbKind})`, () => {
  test('the JWKS is fetched once and cached; a rotated key is fetched once more, at most once per 30 s', async (ctx) => {
    // jose's refetch cooldown reads Date.now(): the test runner's mock clock moves it.
    ctx.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const t = await buildTestApp({ registry });
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal((await push(t.app, t.issuer, 'test.echo', { n: i }, { taskName: `rot-${i}` })).status, 200);
      }
      assert.equal(t.issuer.jwksRequests(), 1);
      await t.issuer.rotate();
      // Right after a fetch, tokens with the new kid are refused without hammering the issuer.
      for (let i = 0; i < 10; i++) {
        assert.equal((await push(t.app, t.issuer, 'test.echo', { n: i }, { taskName: `early-${i}` })).status, 401);
      }
      assert.equal(t.issuer.jwksRequests(), 1);
      ctx.mock.timers.tick(31_000);
      assert.equal((await push(t.app, t.issuer, 'test.echo', { n: 1 }, { taskName: 'after-rotation' })).status, 200);
      assert.equal((await push(t.app, t.issuer, 'test.echo', { n: 2 }, { taskName: 'after-rotation-2' })).status, 200);
      assert.equal(t.issuer.jwksRequests(), 2);
    } finally {
      await t.close();
    }
  });
});

describe(`X-Task-Secret (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ registry, env: { TASKS_AUTH: 'secret', TASK_SECRET: SECRET } });
  });
  after(() => t.close());

  const withSecret = (secret: string | undefined, taskName: string) =>
    push(
      t.app,
      t.issuer,
      'test.echo',
      { n: 2 },
      {
        token: null,
        taskName,
        headers: secret === undefined ? {} : { 'x-task-secret': secret },
      },
    );

  test('the right secret is accepted', async () => {
    assert.equal((await withSecret(SECRET, 's-ok')).status, 200);
  });
  for (const [label, secret] of [
    ['a wrong secret of the same length', `${'s'.repeat(39)}x`],
    ['an empty secret', ''],
    ['a secret of a different length', 's'.repeat(12)],
    ['no secret', undefined],
  ] as const) {
    test(`${label} is refused`, async () => {
      const r = await withSecret(secret, `s-${label}`);
      assert.equal(r.status, 401);
      const { rows } = await t.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM task_runs WHERE cloud_task_name = $1',
        [`s-${label}`],
      );
      assert.equal(rows[0]!.n, 0);
    });
  }
  test('a valid OIDC token is not accepted in secret mode', async () => {
    const r = await push(t.app, t.issuer, 'test.echo', { n: 2 }, { taskName: 's-token' });
    assert.equal(r.status, 401);
  });
});

describe(`oidc-or-secret and cloud-run-iam (${testDbKind})`, () => {
  test('oidc-or-secret accepts either credential and refuses a wrong one', async () => {
    const t = await buildTestApp({ registry, env: { TASKS_AUTH: 'oidc-or-secret', TASK_SECRET: SECRET } });
    try {
      assert.equal((await push(t.app, t.issuer, 'test.echo', { n: 3 }, { taskName: 'os-1' })).status, 200);
      const viaSecret = await push(
        t.app,
        t.issuer,
        'test.echo',
        { n: 3 },
        {
          token: null,
          taskName: 'os-2',
          headers: { 'x-task-secret': SECRET },
        },
      );
      assert.equal(viaSecret.status, 200);
      const wrong = await push(
        t.app,
        t.issuer,
        'test.echo',
        { n: 3 },
        {
          token: null,
          taskName: 'os-3',
          headers: { 'x-task-secret': 'nope' },
        },
      );
      assert.equal(wrong.status, 401);
    } finally {
      await t.close();
    }
  });

  test('cloud-run-iam accepts a token whose signature Cloud Run removed, and still checks its claims', async () => {
    // The one shape the configuration accepts for cloud-run-iam: cloud backend, no HOST, no webhooks.
    const t = await buildTestApp({
      registry,
      env: {
        TASKS_AUTH: 'cloud-run-iam',
        TASKS_BACKEND: 'cloud',
        GCP_PROJECT_ID: 'acme',
        GCP_LOCATION: 'us-central1',
        SESSION_SECRET: 's'.repeat(40),
        TASKS_INVOKER_SERVICE_ACCOUNT: INVOKER,
      },
    });
    try {
      const stripped = async (claims: Record<string, unknown> = {}) => {
        const [header, payload] = (await t.issuer.token(claims)).split('.');
        return `${header}.${payload}.SIGNATURE_REMOVED_BY_GOOGLE`;
      };
      const ok = await push(t.app, t.issuer, 'test.echo', { n: 4 }, { token: await stripped(), taskName: 'iam-1' });
      assert.equal(ok.status, 200);
      const otherAccount = await push(
        t.app,
        t.issuer,
        'test.echo',
        { n: 4 },
        {
          token: await stripped({ email: 'x@y.iam.gserviceaccount.com' }),
          taskName: 'iam-2',
        },
      );
      assert.equal(otherAccount.status, 401);
      const otherAudience = await push(
        t.app,
        t.issuer,
        'test.echo',
        { n: 4 },
        {
          token: await stripped({ aud: 'https://elsewhere' }),
          taskName: 'iam-3',
        },
      );
      assert.equal(otherAudience.status, 401);
      assert.equal(
        (await push(t.app, t.issuer, 'test.echo', { n: 4 }, { token: null, taskName: 'iam-4' })).status,
        401,
      );
    } finally {
      await t.close();
    }
  });
});

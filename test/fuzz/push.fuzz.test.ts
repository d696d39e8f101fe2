// Property-based fuzzing of POST /tasks/{task}: tokens, X-Task-Secret, the X-CloudTasks-* and
// X-CloudScheduler-* headers and the JSON bodies. A push without valid credentials is 401 and
// changes nothing, whatever else it carries; an unknown task is 404 and changes nothing; an
// authenticated push of any body and headers is answered by the outcome mapping, never by an
// unhandled error (500 INTERNAL).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { registry } from '../../src/task-registry.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { INVOKER } from '../helpers/test-issuer.ts';
import { anyJson, fingerprint, headerValue, malformedJson, nastyString, params } from './fuzz.ts';

const SECRET = 'push-secret-for-fuzzing-0123456789abcdef';
/** Tasks whose handlers reach nothing outside the process (the scraper would fetch the URL). */
const SAFE_TASKS = [...registry.tasks.keys()].filter((name) => name !== 'scraper.scrape_page');

/** The X-CloudTasks-* / X-CloudScheduler-* headers, each absent, plausible or garbage. */
const deliveryHeaders = fc.record(
  {
    'x-cloudtasks-taskname': fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/), headerValue),
    'x-cloudtasks-queuename': fc.oneof(fc.constantFrom('default', 'whatsapp'), headerValue),
    'x-cloudtasks-taskretrycount': fc.oneof(fc.nat().map(String), headerValue, fc.constant('99999999999999999999')),
    'x-cloudtasks-taskexecutioncount': fc.oneof(fc.nat().map(String), headerValue),
    'x-cloudtasks-tasketa': fc.oneof(
      fc.double({ noNaN: true }).map(String),
      fc.constantFrom('1e20', '-1e20', '8.64e12', 'Infinity', '1772366400.5'),
      headerValue,
    ),
    'x-cloudtasks-taskpreviousresponse': fc.oneof(fc.nat({ max: 599 }).map(String), headerValue),
    'x-cloudscheduler': fc.constantFrom('true', 'false', 'TRUE', ''),
    'x-cloudscheduler-jobname': headerValue,
    'x-cloudscheduler-scheduletime': fc.oneof(
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      fc.constantFrom('+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '2026-02-30T25:61:00Z'),
      headerValue,
    ),
    'x-task-key': fc.oneof(
      nastyString.map((s) => s.replace(/[^\t\x20-\x7e]/g, '')),
      headerValue,
    ),
    'content-type': fc.constantFrom('application/json', 'text/plain', 'application/octet-stream'),
  },
  { requiredKeys: [] },
);

/** A body: plausible payloads with nasty leaves, any JSON, or not JSON at all. */
const body = fc.oneof(
  fc.record({ wamid: nastyString }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc
    .record(
      {
        accountId: fc.oneof(fc.integer(), nastyString),
        credits: fc.oneof(fc.integer(), nastyString),
        topic: nastyString,
      },
      { requiredKeys: [] },
    )
    .map((v) => JSON.stringify(v)),
  fc.record({ month: nastyString }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc.constantFrom('{}', '{"wamid":"\\ud800"}', '{"x":"\\u0000"}', '{"\\ud800":1}', '{"month":"2026-13"}'),
  anyJson.map((v) => JSON.stringify(v)),
  malformedJson(fc.json()),
);

describe(`fuzz: task pushes (${testDbKind})`, () => {
  let t: TestApp;
  let forged: string[];
  before(async () => {
    t = await buildTestApp({ env: { TASKS_AUTH: 'oidc-or-secret', TASK_SECRET: SECRET } });
    const now = Math.floor(t.clock.now() / 1000);
    // Tokens that must all be refused: wrong audience, e-mail, issuer, unverified, expired, not yet
    // valid, signed by an unknown key.
    forged = await Promise.all([
      t.issuer.token({ aud: 'https://elsewhere.example' }),
      t.issuer.token({ email: 'someone@evil.example' }),
      t.issuer.token({ iss: 'https://accounts.google.com' }),
      t.issuer.token({ email_verified: false }),
      t.issuer.token({}, { nowSeconds: now - 7200 }),
      t.issuer.token({ nbf: now + 3600 }),
      t.issuer.tokenFromUnknownKey(),
      t.issuer.token({ email: INVOKER.toUpperCase() }),
    ]);
  });
  after(async () => {
    await t.close();
  });

  test('without valid credentials: 401 and nothing changes, whatever the token, secret, headers and body', async () => {
    const token = fc.oneof(
      fc.constant(null),
      fc.constantFrom(...forged.map((f) => `Bearer ${f}`)),
      fc.constantFrom(...forged).map((f) => `Bearer ${f.slice(0, -3)}abc`),
      fc.constantFrom(...forged).map((f) => `bearer  ${f}`),
      headerValue.map((v) => `Bearer ${v}`),
      headerValue,
      fc.stringMatching(/^[A-Za-z0-9_-]{5,40}\.[A-Za-z0-9_-]{5,80}\.[A-Za-z0-9_-]{0,40}$/).map((v) => `Bearer ${v}`),
      fc.constantFrom('Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.', 'Basic dXNlcjpwYXNz', 'Bearer'),
    );
    const secret = fc.oneof(
      fc.constant(undefined),
      headerValue,
      fc.constantFrom(SECRET.slice(0, -1), `${SECRET} `.trimStart().concat('x'), SECRET.toUpperCase(), ''),
    );
    // ('.' and '..' are path segments: /tasks/.. is not a push.)
    const task = fc.oneof(
      fc.constantFrom(...registry.tasks.keys()),
      fc.stringMatching(/^[a-z._]{1,30}$/).filter((s) => s !== '.' && s !== '..'),
    );
    await fc.assert(
      fc.asyncProperty(token, secret, task, deliveryHeaders, body, async (auth, sec, name, headers, raw) => {
        fc.pre(sec !== SECRET);
        const before = await fingerprint(t.db);
        const r = await t.app.inject({
          method: 'POST',
          url: `/tasks/${encodeURIComponent(name)}`,
          headers: {
            'user-agent': 'Google-Cloud-Tasks',
            ...headers,
            ...(auth === null ? {} : { authorization: auth }),
            ...(sec === undefined ? {} : { 'x-task-secret': sec }),
          },
          payload: raw,
        });
        assert.equal(r.statusCode, 401, r.body.slice(0, 300));
        assert.equal(r.headers['x-task-outcome'], 'retry');
        assert.deepEqual(await fingerprint(t.db), before, 'an unauthenticated push changed the database');
      }),
      params(100),
    );
  });

  test('authenticated, to a task that does not exist: 404 and nothing changes', async () => {
    const name = fc.oneof(
      fc.stringMatching(/^[a-z][a-z._-]{0,40}$/),
      nastyString.filter((s) => s.length > 0 && s.length < 200 && s.isWellFormed()),
    );
    await fc.assert(
      fc.asyncProperty(name, body, async (task, raw) => {
        fc.pre(!registry.tasks.has(task) && task !== '.' && task !== '..');
        const before = await fingerprint(t.db);
        const r = await t.app.inject({
          method: 'POST',
          url: `/tasks/${encodeURIComponent(task)}`,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${await t.issuer.token()}` },
          payload: raw,
        });
        assert.equal(r.statusCode, 404, r.body.slice(0, 300));
        assert.deepEqual(await fingerprint(t.db), before, 'a push to an unknown task changed the database');
      }),
      params(100),
    );
  });

  test('authenticated (token or secret), any body and delivery headers: an outcome, never an unhandled error', async () => {
    const credentials = fc.constantFrom('token', 'secret');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...SAFE_TASKS),
        credentials,
        deliveryHeaders,
        body,
        async (task, how, headers, raw) => {
          const r = await push(t.app, t.issuer, task, null, {
            token: how === 'token' ? undefined : null,
            headers: { ...headers, ...(how === 'secret' ? { 'x-task-secret': SECRET } : {}) },
            rawBody: raw,
          });
          const code = (r.body as { error?: { code?: string } }).error?.code;
          assert.notEqual(code, 'INTERNAL', `an unhandled error: ${JSON.stringify(r.body)}`);
          assert.ok(r.status !== 401 && r.status !== 404, `status ${r.status}: ${JSON.stringify(r.body)}`);
          assert.ok(
            ['succeeded', 'dead', 'duplicate', 'busy', 'retry'].includes(String(r.outcome)),
            `outcome ${r.outcome}, status ${r.status}: ${JSON.stringify(r.body)}`,
          );
          if (r.status >= 500) assert.equal(r.outcome, 'retry');
        },
      ),
      params(150),
    );
  });
});

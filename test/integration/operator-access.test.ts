// Who may open /admin without a login: with no login configured and the local task backend, only
// a client on this machine (a loopback socket, a Host naming this machine, no proxy in between);
// never with the cloud backend. And the loopback mode's CSRF token belongs to one browser.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';

const LOCAL = { host: 'localhost:8080' };

function cookieOf(setCookie: string | string[] | undefined): string {
  const first = ([] as string[]).concat(setCookie ?? [])[0] ?? '';
  return first.split(';')[0]!;
}

describe('the dashboard without a login, local task backend', () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp();
  });
  after(() => t.close());

  test('a client on this machine gets the page, which says it is open to this machine only', async () => {
    const r = await t.app.inject({ url: '/admin', headers: LOCAL });
    assert.equal(r.statusCode, 200);
    assert.match(r.body, /open to clients on this machine only/);
    assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
  });

  const refused: Array<[string, InjectOptions]> = [
    ['a client on another machine', { url: '/admin', remoteAddress: '10.1.2.3', headers: LOCAL }],
    ['a loopback socket with a foreign Host (DNS rebinding)', { url: '/admin', headers: { host: 'evil.example' } }],
    [
      'a request a local proxy or tunnel forwarded',
      { url: '/admin', headers: { ...LOCAL, 'x-forwarded-for': '203.0.113.9' } },
    ],
    ['a request with a Forwarded header', { url: '/admin', headers: { ...LOCAL, forwarded: 'for=203.0.113.9' } }],
  ];
  for (const [label, request] of refused) {
    test(`${label} is refused`, async () => {
      const r = await t.app.inject(request);
      assert.equal(r.statusCode, 403);
      assert.match(r.body, /Dashboard closed/);
      assert.doesNotMatch(r.body, /Runs per minute/);
    });
  }

  test("a form's CSRF token is good only with the browser cookie it was made for", async () => {
    // An account, whose page carries the credit adjustment form.
    const { rows } = await t.db.query<{ id: number }>('INSERT INTO accounts DEFAULT VALUES RETURNING id');
    const accountUrl = `/admin/accounts/${rows[0]!.id}`;
    const page = await t.app.inject({ url: accountUrl, headers: LOCAL });
    const cookie = cookieOf(page.headers['set-cookie']);
    const token = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1];
    const key = /name="key" value="([^"]+)"/.exec(page.body)?.[1];
    assert.ok(cookie && token && key, 'the page sets a browser cookie and its form carries a token and a key');
    const other = await t.app.inject({ url: accountUrl, headers: LOCAL });
    const otherCookie = cookieOf(other.headers['set-cookie']);
    assert.notEqual(otherCookie, cookie);
    const balance = async () =>
      Number(
        (await t.db.query<{ balance: string }>('SELECT balance FROM accounts WHERE id = $1', [rows[0]!.id])).rows[0]!
          .balance,
      );
    const post = (c: string) =>
      t.app.inject({
        method: 'POST',
        url: `${accountUrl}/adjust`,
        headers: { ...LOCAL, cookie: c, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ _csrf: token!, key: key!, amount: '5', reason: 'goodwill' }).toString(),
      });
    const stolen = await post(otherCookie);
    assert.equal(stolen.statusCode, 403);
    assert.match(stolen.body, /CSRF token is missing or wrong/);
    assert.equal(await balance(), 0, 'nothing changed');
    const own = await post(cookie);
    assert.notEqual(own.statusCode, 403, own.body);
    assert.equal(await balance(), 5, 'with its own cookie the token passes and the adjustment applies');
  });
});

describe('the dashboard without a login, cloud task backend', () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({
      env: {
        TASKS_BACKEND: 'cloud',
        GCP_PROJECT_ID: 'p',
        GCP_LOCATION: 'us-central1',
        TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks-invoker@p.iam.gserviceaccount.com',
      },
    });
  });
  after(() => t.close());

  test('is closed even to this machine', async () => {
    const r = await t.app.inject({ url: '/admin', headers: LOCAL });
    assert.equal(r.statusCode, 403);
    assert.match(r.body, /Dashboard closed/);
  });
});

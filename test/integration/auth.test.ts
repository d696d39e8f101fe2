// Operators' login over real HTTP: the service listening on 127.0.0.1, a local OpenID provider
// (oauth2-mock-server) standing in for Google, and a small cookie-keeping client for the browser.
// State binding, single use, expiry, the e-mail allow-list, email_verified, CSRF on logout and the
// session's expiries each have a test that fails when the guard is removed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openPostgres } from '../../src/db/postgres.ts';
import { safeReturnTo } from '../../src/domains/auth/auth-tokens.ts';
import {
  LOGIN_STATE_TTL_MS,
  SESSION_ABSOLUTE_TTL_MS,
  SESSION_IDLE_TTL_MS,
} from '../../src/domains/auth/login.service.ts';
import { freePort } from '../helpers/cli-process.ts';
import { type OidcProvider, startOidcProvider } from '../helpers/oidc-provider.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { type TestDb, testDbKind } from '../helpers/test-db.ts';

const ADMIN = 'admin@example.com';
const SECRET = 'a-session-secret-of-at-least-32-characters';

/** A browser, as far as cookies and redirects go: keeps what the service sets, follows nothing. */
class Browser {
  readonly cookies = new Map<string, string>();

  async get(url: string | URL): Promise<Response> {
    return this.request(url, { method: 'GET' });
  }

  async post(url: string | URL, form: Record<string, string>): Promise<Response> {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  async request(url: string | URL, init: RequestInit): Promise<Response> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...(init.headers as Record<string, string>), ...(cookie ? { cookie } : {}) },
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (value === '' || /max-age=0\b|expires=thu, 01 jan 1970/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }
}

interface Service {
  t: TestApp;
  base: string;
  close(): Promise<void>;
}

describe(`operators' login (${testDbKind})`, () => {
  let provider: OidcProvider;
  let first: Service;

  /** The service on a real port, its public URL the one it listens on; `db` shares another's database. */
  async function startService(options: { db?: TestDb; env?: Record<string, string> } = {}): Promise<Service> {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    // A second instance: its own connections to the same database (PostgreSQL, closed with the
    // instance), or the same in-process PGlite (which one process opens once), left open.
    const shared = options.db;
    const db: TestDb | undefined = !shared
      ? undefined
      : shared.url
        ? { ...openPostgres({ url: shared.url }), url: shared.url }
        : { ...shared, close: async () => {} };
    const t = await buildTestApp({
      ...(db ? { db } : {}),
      env: {
        PUBLIC_BASE_URL: base,
        OAUTH_ISSUER_URL: provider.issuerUrl,
        OAUTH_CLIENT_ID: 'dashboard-client',
        OAUTH_CLIENT_SECRET: 'dashboard-client-secret',
        ADMIN_EMAILS: `${ADMIN}, second@example.com`,
        SESSION_SECRET: SECRET,
        ...options.env,
      },
    });
    await t.app.listen({ port, host: '127.0.0.1' });
    return {
      t,
      base,
      close: () => t.close(),
    };
  }

  before(async () => {
    provider = await startOidcProvider();
    first = await startService();
  });
  after(async () => {
    await first.close();
    await provider.close();
  });

  const count = async (sql: string, values: unknown[] = []) =>
    Number((await first.t.db.query<{ n: number | string }>(sql, values)).rows[0]!.n);
  const sessions = () => count('SELECT count(*) AS n FROM operator_sessions');
  const audits = (action: string) => count('SELECT count(*) AS n FROM audit_events WHERE action = $1', [action]);

  /** GET /auth/login: the provider's authorization URL. */
  async function startLogin(browser: Browser, s: Service = first, returnTo?: string): Promise<URL> {
    const query = returnTo === undefined ? '' : `?return_to=${encodeURIComponent(returnTo)}`;
    const res = await browser.get(`${s.base}/auth/login${query}`);
    assert.equal(res.status, 302, await res.text());
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin, provider.issuerUrl);
    return location;
  }

  /** The provider signs the user in at once and sends the browser to the callback. */
  async function authorize(authorizationUrl: URL, user = { email: ADMIN, email_verified: true }): Promise<URL> {
    provider.setNextUser(user);
    const res = await fetch(authorizationUrl, { redirect: 'manual' });
    assert.equal(res.status, 302);
    return new URL(res.headers.get('location')!);
  }

  async function login(browser: Browser, s: Service = first, returnTo?: string): Promise<Response> {
    const callback = await authorize(await startLogin(browser, s, returnTo));
    const res = await browser.get(callback);
    assert.equal(res.status, 303, await res.text());
    return res;
  }

  const adminPage = (browser: Browser, s: Service = first, path = '/admin') => browser.get(`${s.base}${path}`);

  test('a full login sets a session cookie that opens the dashboard', async () => {
    const browser = new Browser();
    const closed = await adminPage(browser);
    assert.equal(closed.status, 302);
    assert.equal(closed.headers.get('location'), '/auth/login?return_to=%2Fadmin');

    const authorizationUrl = await startLogin(browser);
    // Code flow with PKCE S256, a state and a nonce.
    const sent = authorizationUrl.searchParams;
    assert.equal(sent.get('response_type'), 'code');
    assert.equal(sent.get('code_challenge_method'), 'S256');
    assert.match(sent.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.ok(sent.get('state') && sent.get('nonce'));
    assert.equal(sent.get('redirect_uri'), `${first.base}/auth/callback`);
    assert.ok(browser.cookies.has('admin_login'), 'the browser is marked before it leaves');

    const before = await audits('login');
    const callback = await browser.get(await authorize(authorizationUrl));
    assert.equal(callback.status, 303);
    assert.equal(callback.headers.get('location'), '/admin');
    const setCookie = callback.headers.getSetCookie().find((c) => c.startsWith('admin_session='))!;
    assert.match(setCookie, /HttpOnly/i);
    assert.match(setCookie, /SameSite=Lax/i);
    assert.match(setCookie, /Path=\//);
    assert.doesNotMatch(setCookie, /Secure/i, 'plain http: no Secure (the https case is below)');
    assert.ok(!browser.cookies.has('admin_login'), 'the login cookie is cleared once used');

    const page = await adminPage(browser);
    assert.equal(page.status, 200);
    const body = await page.text();
    assert.ok(body.includes(ADMIN), 'the page names the operator');
    assert.ok(body.includes('action="/auth/logout"'));
    assert.equal(await audits('login'), before + 1);

    // The database holds the token's hash, never the token.
    const token = browser.cookies.get('admin_session')!;
    const rows = await first.t.db.query<{ email: string; token_hash: Uint8Array }>(
      'SELECT email, token_hash FROM operator_sessions',
    );
    assert.ok(rows.rows.some((r) => r.email === ADMIN));
    assert.ok(rows.rows.every((r) => !Buffer.from(r.token_hash).toString().includes(token)));
    const stored = await count(
      "SELECT count(*) AS n FROM operator_sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
      [token],
    );
    assert.equal(stored, 1);
  });

  test('after login the browser returns to the page it asked for', async () => {
    const browser = new Browser();
    const closed = await adminPage(browser, first, '/admin/runs?status=dead&task=x');
    assert.equal(closed.status, 302);
    const to = new URL(closed.headers.get('location')!, first.base).searchParams.get('return_to')!;
    const res = await login(browser, first, to);
    assert.equal(res.headers.get('location'), '/admin/runs?status=dead&task=x');
  });

  test('open-redirect attempts in return_to end on /admin', async () => {
    const attempts = [
      'https://evil.example/admin',
      '//evil.example/admin',
      '/\\evil.example',
      '/admin/../../evil',
      '/admin/%2e%2e/%2e%2e//evil.example',
      '/\t/evil.example',
      'javascript:alert(1)',
      '/auth/logout',
      '',
    ];
    for (const attempt of attempts) {
      const browser = new Browser();
      const res = await login(browser, first, attempt);
      assert.equal(res.headers.get('location'), '/admin', attempt);
    }
    assert.equal(safeReturnTo('/admin//evil.example'), '/admin//evil.example', 'a path, resolved on this site');
    assert.equal(safeReturnTo('/admin/runs/42'), '/admin/runs/42');
    assert.equal(safeReturnTo(['/admin/runs']), '/admin');
  });

  test('an e-mail not in ADMIN_EMAILS is refused and nothing is created for it', async () => {
    const browser = new Browser();
    const [before, refusedBefore] = [await sessions(), await audits('login.refused')];
    const callback = await authorize(await startLogin(browser), {
      email: 'Intruder@Example.com',
      email_verified: true,
    });
    const res = await browser.get(callback);
    assert.equal(res.status, 403);
    const text = await res.text();
    assert.ok(text.includes('intruder@example.com') && text.includes('not allowed'), text);
    assert.ok(!browser.cookies.has('admin_session'));
    assert.equal(await sessions(), before, 'no session row');
    assert.equal(await audits('login.refused'), refusedBefore + 1);
    const event = await first.t.db.query<{ actor: string; detail: { reason: string } }>(
      "SELECT actor, detail FROM audit_events WHERE action = 'login.refused' ORDER BY id DESC LIMIT 1",
    );
    assert.equal(event.rows[0]!.actor, 'intruder@example.com');
    assert.equal(event.rows[0]!.detail.reason, 'not_allowed');
    assert.equal((await adminPage(browser)).status, 302);
  });

  test('an allowed e-mail the provider has not verified is refused', async () => {
    const browser = new Browser();
    const before = await sessions();
    const callback = await authorize(await startLogin(browser), { email: ADMIN, email_verified: false });
    const res = await browser.get(callback);
    assert.equal(res.status, 403);
    assert.match(await res.text(), /not verified/);
    assert.equal(await sessions(), before);
    assert.equal((await adminPage(browser)).status, 302);
  });

  test('a forged state is refused, and the real one still works', async () => {
    const browser = new Browser();
    const callback = await authorize(await startLogin(browser));
    const forged = new URL(callback);
    forged.searchParams.set('state', 'forged-state-value-of-the-usual-length-0000000');
    const before = await sessions();
    const res = await browser.get(forged);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Login not completed/);
    assert.equal(await sessions(), before);
    const missing = new URL(callback);
    missing.searchParams.delete('state');
    assert.equal((await browser.get(missing)).status, 400);
    assert.equal((await browser.get(callback)).status, 303);
  });

  test('a state is used once: the same callback again is refused', async () => {
    const browser = new Browser();
    const callback = await authorize(await startLogin(browser));
    const loginCookie = browser.cookies.get('admin_login')!;
    assert.equal((await browser.get(callback)).status, 303);
    const before = await sessions();
    // The same browser (its login cookie kept) sends the callback URL again.
    const replayer = new Browser();
    replayer.cookies.set('admin_login', loginCookie);
    const replay = await replayer.get(callback);
    assert.equal(replay.status, 400);
    // Refused here, before the code goes to the provider (which would refuse a used code anyway).
    assert.match(await replay.text(), /Login not completed/);
    assert.ok(!replayer.cookies.has('admin_session'));
    assert.equal(await sessions(), before, 'no second session');
  });

  test('two callbacks racing with one state: exactly one logs in', async () => {
    const browser = new Browser();
    const callback = await authorize(await startLogin(browser));
    const cookie = browser.cookies.get('admin_login')!;
    const racers = Array.from({ length: 4 }, () => {
      const b = new Browser();
      b.cookies.set('admin_login', cookie);
      return b;
    });
    const before = await sessions();
    const statuses = (await Promise.all(racers.map((b) => b.get(callback)))).map((r) => r.status).sort();
    assert.deepEqual(statuses, [303, 400, 400, 400]);
    assert.equal(await sessions(), before + 1);
  });

  test('the state is stored as a hash, and a login the user cancels at the provider ends it', async () => {
    const browser = new Browser();
    const authorizationUrl = await startLogin(browser);
    const state = authorizationUrl.searchParams.get('state')!;
    const byHash = "SELECT count(*) AS n FROM operator_login_states WHERE state_hash = sha256(convert_to($1, 'UTF8'))";
    assert.equal(await count(byHash, [state]), 1);
    assert.equal(
      await count(
        "SELECT count(*) AS n FROM operator_login_states WHERE position(convert_to($1, 'UTF8') IN state_hash) > 0",
        [state],
      ),
      0,
    );
    const cancelled = new URL(`${first.base}/auth/callback`);
    cancelled.searchParams.set('error', 'access_denied');
    cancelled.searchParams.set('state', state);
    const res = await browser.get(cancelled);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Login failed/);
    assert.equal(await count(byHash, [state]), 0, 'consumed');
    assert.ok(!browser.cookies.has('admin_session'));
  });

  test('an ID token that fails a check (audience, nonce) is refused, and no session is created', async () => {
    const edits: [string, (payload: Record<string, unknown>) => void][] = [
      ['another audience', (p) => (p.aud = 'another-client')],
      ['another nonce', (p) => (p.nonce = 'a-nonce-from-another-login')],
    ];
    for (const [label, edit] of edits) {
      const browser = new Browser();
      const callback = await authorize(await startLogin(browser));
      const before = await sessions();
      provider.tamperNextTokens(edit);
      const res = await browser.get(callback);
      assert.equal(res.status, 400, label);
      assert.match(await res.text(), /Login failed/, label);
      assert.equal(await sessions(), before, label);
      assert.ok(!browser.cookies.has('admin_session'), label);
    }
  });

  test('a provider that goes away between the login and the callback gives a 503 page', async () => {
    const brief = await startOidcProvider();
    const s = await startService({ db: first.t.db, env: { OAUTH_ISSUER_URL: brief.issuerUrl } });
    try {
      s.t.clock.set(first.t.clock.now());
      const browser = new Browser();
      const res = await browser.get(`${s.base}/auth/login`);
      const callback = await authorize(new URL(res.headers.get('location')!));
      await brief.close();
      const answer = await browser.get(new URL(callback.pathname + callback.search, s.base));
      assert.equal(answer.status, 503);
      assert.match(await answer.text(), /Login unavailable/);
      assert.ok(!browser.cookies.has('admin_session'));
    } finally {
      await s.close();
    }
  });

  test('a state expires 10 minutes after the login started (by the clock)', async () => {
    const browser = new Browser();
    const callback = await authorize(await startLogin(browser));
    first.t.clock.advance(LOGIN_STATE_TTL_MS);
    const res = await browser.get(callback);
    assert.equal(res.status, 400);
    assert.ok(!browser.cookies.has('admin_session'));

    const inTime = new Browser();
    const callback2 = await authorize(await startLogin(inTime));
    first.t.clock.advance(LOGIN_STATE_TTL_MS - 1000);
    assert.equal((await inTime.get(callback2)).status, 303);
  });

  test('a callback from another browser is refused; the one that started the login completes it', async () => {
    const victim = new Browser();
    const callback = await authorize(await startLogin(victim));
    const thief = new Browser();
    await startLogin(thief); // a login cookie of its own
    assert.notEqual(thief.cookies.get('admin_login'), victim.cookies.get('admin_login'));
    const before = await sessions();
    assert.equal((await thief.get(callback)).status, 400);
    assert.equal((await new Browser().get(callback)).status, 400, 'no cookie at all');
    assert.equal(await sessions(), before);
    assert.ok(!thief.cookies.has('admin_session'));
    assert.equal((await victim.get(callback)).status, 303);
  });

  test('a callback landing on a second instance (same database) completes the login; its session works on both', async () => {
    const second = await startService({ db: first.t.db });
    try {
      second.t.clock.set(first.t.clock.now());
      const browser = new Browser();
      const callback = await authorize(await startLogin(browser, first));
      const onSecond = new URL(callback.pathname + callback.search, second.base);
      const res = await browser.get(onSecond);
      assert.equal(res.status, 303, await res.text());
      assert.equal((await adminPage(browser, second)).status, 200);
      assert.equal((await adminPage(browser, first)).status, 200);
    } finally {
      await second.close();
    }
  });

  test('a session ends when its e-mail leaves ADMIN_EMAILS', async () => {
    const browser = new Browser();
    await login(browser);
    const narrower = await startService({ db: first.t.db, env: { ADMIN_EMAILS: 'someone-else@example.com' } });
    try {
      narrower.t.clock.set(first.t.clock.now());
      assert.equal((await adminPage(browser, narrower)).status, 302);
      assert.equal((await adminPage(browser, first)).status, 200);
    } finally {
      await narrower.close();
    }
  });

  test('logout needs the CSRF token; it ends the session in the database', async () => {
    const browser = new Browser();
    await login(browser);
    const page = await (await adminPage(browser)).text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(csrf);
    const oldCookie = browser.cookies.get('admin_session')!;
    const [before, logoutsBefore] = [await sessions(), await audits('logout')];

    const noToken = await browser.post(`${first.base}/auth/logout`, {});
    assert.equal(noToken.status, 403);
    const wrongToken = await browser.post(`${first.base}/auth/logout`, { _csrf: `${csrf.slice(0, -2)}xx` });
    assert.equal(wrongToken.status, 403);
    assert.equal(await sessions(), before, 'nothing changed');
    assert.equal(browser.cookies.get('admin_session'), oldCookie);
    assert.equal((await adminPage(browser)).status, 200);

    const out = await browser.post(`${first.base}/auth/logout`, { _csrf: csrf });
    assert.equal(out.status, 200);
    assert.match(await out.text(), /Logged out/);
    assert.ok(!browser.cookies.has('admin_session'), 'the cookie is cleared');
    assert.equal(await sessions(), before - 1);
    assert.equal(await audits('logout'), logoutsBefore + 1);

    // The old cookie, kept by someone, no longer opens anything.
    const kept = new Browser();
    kept.cookies.set('admin_session', oldCookie);
    assert.equal((await adminPage(kept)).status, 302);
  });

  test('a POST under /admin without a session is refused and changes nothing', async () => {
    const before = await count('SELECT count(*) AS n FROM audit_events');
    const res = await new Browser().post(`${first.base}/admin/runs/replay`, { _csrf: 'x', status: 'dead' });
    assert.equal(res.status, 401);
    assert.equal(await count('SELECT count(*) AS n FROM audit_events'), before);
  });

  test('a session ends after an idle hour; requests keep it alive, writing at most once a minute', async () => {
    const browser = new Browser();
    await login(browser);
    const token = browser.cookies.get('admin_session')!;
    const lastSeen = async () =>
      (
        await first.t.db.query<{ last_seen_at: Date }>(
          "SELECT last_seen_at FROM operator_sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
          [token],
        )
      ).rows[0]!.last_seen_at.valueOf();
    const loggedInAt = await lastSeen();
    first.t.clock.advance(30_000);
    assert.equal((await adminPage(browser)).status, 200);
    assert.equal(await lastSeen(), loggedInAt, 'not written within the minute');
    first.t.clock.advance(SESSION_IDLE_TTL_MS - 60_000);
    assert.equal((await adminPage(browser)).status, 200);
    assert.equal(await lastSeen(), first.t.clock.now(), 'moved forward');
    first.t.clock.advance(SESSION_IDLE_TTL_MS - 1000);
    assert.equal((await adminPage(browser)).status, 200, 'still alive: it was used within the hour');
    first.t.clock.advance(SESSION_IDLE_TTL_MS);
    assert.equal((await adminPage(browser)).status, 302, 'idle for an hour: ended');
  });

  test('a session ends 12 hours after login however active it is', async () => {
    const browser = new Browser();
    await login(browser);
    const step = SESSION_IDLE_TTL_MS / 2;
    for (let elapsed = step; elapsed < SESSION_ABSOLUTE_TTL_MS; elapsed += step) {
      first.t.clock.advance(step);
      assert.equal((await adminPage(browser)).status, 200, `at ${elapsed / 60_000} min`);
    }
    first.t.clock.advance(step);
    assert.equal((await adminPage(browser)).status, 302);
  });

  test('with an https public URL the cookies are Secure and __Host- prefixed', async () => {
    const t = await buildTestApp({
      db: { ...first.t.db, close: async () => {} },
      env: {
        PUBLIC_BASE_URL: 'https://ops.example.com',
        OAUTH_ISSUER_URL: provider.issuerUrl,
        OAUTH_CLIENT_ID: 'dashboard-client',
        OAUTH_CLIENT_SECRET: 'dashboard-client-secret',
        ADMIN_EMAILS: ADMIN,
        SESSION_SECRET: SECRET,
      },
    });
    try {
      const res = await t.app.inject({ method: 'GET', url: '/auth/login' });
      assert.equal(res.statusCode, 302);
      assert.equal(
        new URL(res.headers.location as string).searchParams.get('redirect_uri'),
        'https://ops.example.com/auth/callback',
      );
      const cookie = String(res.headers['set-cookie']);
      assert.match(cookie, /^__Host-admin_login=/);
      assert.match(cookie, /; Secure/);
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /Path=\//);
      assert.doesNotMatch(cookie, /Domain=/i);
      const admin = await t.app.inject({ method: 'GET', url: '/admin', cookies: { admin_session: 'x'.repeat(43) } });
      assert.equal(admin.statusCode, 302, 'the unprefixed name is not read');
    } finally {
      await t.close();
    }
  });

  test('an unreachable provider gives a 503 page, and discovery is tried again later', async () => {
    const port = await freePort();
    const down = await startService({ db: first.t.db, env: { OAUTH_ISSUER_URL: `http://127.0.0.1:${port}` } });
    try {
      const browser = new Browser();
      const res = await browser.get(`${down.base}/auth/login`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /Login unavailable/);
      const late = await startOidcProvider({ port });
      try {
        const again = await browser.get(`${down.base}/auth/login`);
        assert.equal(again.status, 302);
        assert.equal(new URL(again.headers.get('location')!).origin, late.issuerUrl);
      } finally {
        await late.close();
      }
    } finally {
      await down.close();
    }
  });
});

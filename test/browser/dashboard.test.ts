// The operators' dashboard in a real Chromium, over the real service (startService on 127.0.0.1,
// its embedded emulator pushing tasks over HTTP) with login configured against a local OpenID
// provider, and the Graph API replaced by a local fake that can make a send die. What an operator
// does: log in, filter the runs to dead ones, replay one and see it succeed, with JavaScript on and
// off; and what must not work: a refused e-mail, forged, replayed, expired or stolen callbacks, a
// POST without its CSRF token, a session after logout. A callback finishing on a second service
// process needs a database two processes share, so that case runs on PostgreSQL only.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NAV } from '../../src/admin/layout.ts';
import { loadConfig } from '../../src/config.ts';
import { sha256 } from '../../src/domains/auth/auth-tokens.ts';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { type Service, startService } from '../../src/main.ts';
import {
  type Browser,
  type BrowserContext,
  launchChromium,
  newContext,
  type Page,
  screenshot,
  visibleText,
  within,
} from '../helpers/browser.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { type RunningBackend, servicePorts, startBackend } from '../helpers/cli-process.ts';
import { type FakeGraphApi, startFakeGraphApi } from '../helpers/fake-graph-api.ts';
import { DEFAULT_USER, type OidcProvider, startOidcProvider } from '../helpers/oidc-provider.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';
import { signedWebhookHeaders } from '../helpers/whatsapp-webhooks.ts';

const ADMIN = DEFAULT_USER.email;
const APP_SECRET = 'browser-test-app-secret';
const EVENT_WAIT_MS = 20_000;

describe(`the dashboard in Chromium, logged in through OpenID Connect (${testDbKind})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'backend-browser-'));
  let provider: OidcProvider;
  let graph: FakeGraphApi;
  let pg: TestDb | undefined;
  let env: Record<string, string>;
  let service: Service;
  let browser: Browser;
  let base: string;
  /** Logged in once, JavaScript on; reused by the tests that need an operator. */
  let operator: BrowserContext;
  let page: Page;

  before(async () => {
    // Chromium first: when it cannot start, nothing else is running yet to keep the file's
    // process alive, so the failure is reported at once instead of at the test timeout.
    browser = await launchChromium();
    [provider, graph] = await Promise.all([startOidcProvider(), startFakeGraphApi()]);
    pg = testDbKind === 'postgres' ? await createTestDb() : undefined;
    env = {
      ...(await servicePorts()),
      DATA_DIR: dataDir,
      DATABASE_URL: pg?.url ?? 'memory://',
      OAUTH_ISSUER_URL: provider.issuerUrl,
      OAUTH_CLIENT_ID: 'backend-dashboard',
      OAUTH_CLIENT_SECRET: 'browser-test-client-secret',
      ADMIN_EMAILS: `${ADMIN},second-admin@example.com`,
      SESSION_SECRET: 'browser-test-session-secret-0123456789abcdef',
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_ACCESS_TOKEN: graph.accessToken,
      WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
      WHATSAPP_API_BASE_URL: graph.baseUrl,
    };
    base = env.PUBLIC_BASE_URL!;
    service = await startService(loadConfig(env), { logger: captureLogger('warn').logger });
    operator = await newContext(browser);
    page = await operator.newPage();
  });
  after(async () => {
    await browser?.close();
    await service?.close();
    await Promise.all([provider?.close(), graph?.close()]);
    await pg?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const count = async (sql: string, params: unknown[] = []) =>
    (await service.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;
  const sessionsOf = (email: string) => count('operator_sessions WHERE email = $1', [email]);
  const runStatus = async (id: number) =>
    (
      await service.db.query<{ status: string; replays: number }>(
        'SELECT status, replays FROM task_runs WHERE id = $1',
        [id],
      )
    ).rows[0]!;

  /** A whatsapp.send_message run the Graph API refuses for good (131026), so it is dead; the next send succeeds. */
  async function deadRun(key: string): Promise<number> {
    graph.script({ code: 131026, details: 'Message undeliverable' });
    const dead = service.events.waitFor('run:dead', (e) => e.key === key);
    await service.enqueuer.enqueue('whatsapp.send_message', { to: '15550300001', text: `hello ${key}` }, { key });
    const event = await within(dead, EVENT_WAIT_MS, `run ${key} dead`);
    return event.runId!;
  }

  /**
   * Starts a login in this browser and follows it to the callback without opening it: the
   * callback URL, not yet used. (Page routes do not see the later hops of a redirect chain, so
   * the hops go through the context's request API, which shares the browser's cookies.)
   */
  async function callbackUrlOf(context: BrowserContext): Promise<string> {
    // A fresh connection per hop: a kept-alive socket the server closes at the same moment is
    // reset under the request (seen once in CI as ECONNRESET on /authorize).
    const hop = { maxRedirects: 0, headers: { connection: 'close' } };
    const login = await context.request.get(`${base}/auth/login`, hop);
    assert.equal(login.status(), 302);
    const authorize = await context.request.get(login.headers().location!, hop);
    assert.equal(authorize.status(), 302);
    const callback = authorize.headers().location!;
    assert.equal(new URL(callback).pathname, '/auth/callback');
    return callback;
  }

  /** The operator's path through the runs: filter to dead, open one, replay it, see it succeed. */
  async function replayThroughTheRunsPage(p: Page, key: string, shots: string | undefined): Promise<void> {
    const runId = await deadRun(key);
    await p.goto(`${base}/admin/runs`);
    assert.equal(new URL(p.url()).pathname, '/admin/runs');
    await p.getByLabel('Status').selectOption('dead');
    await p.getByRole('button', { name: 'Filter' }).click();
    assert.equal(new URL(p.url()).searchParams.get('status'), 'dead');
    const rows = p.locator('table[aria-label="Task runs"] tbody tr');
    const statuses = await Promise.all((await rows.all()).map((r) => r.getAttribute('data-status')));
    assert.ok(statuses.length >= 1);
    assert.deepEqual(new Set(statuses), new Set(['dead']));
    const row = p.locator(`tr[data-run-id="${runId}"]`);
    assert.match(await visibleText(p, `tr[data-run-id="${runId}"]`), /whatsapp\.send_message/);
    assert.match(await visibleText(p, `tr[data-run-id="${runId}"]`), /131026|cannot receive/);
    if (shots) await screenshot(p, `${shots}-runs-dead`);

    await row.getByRole('link', { name: `#${runId}` }).click();
    assert.equal(new URL(p.url()).pathname, `/admin/runs/${runId}`);
    assert.equal(await p.locator('dd[data-status]').getAttribute('data-status'), 'dead');
    if (shots) await screenshot(p, `${shots}-run-dead`);

    const succeeded = service.events.waitFor('run:succeeded', (e) => e.key === key);
    await p.getByRole('button', { name: `Replay run #${runId}` }).click();
    assert.equal(new URL(p.url()).pathname, `/admin/runs/${runId}`);
    assert.match(await visibleText(p, '.flash'), /was replayed/);
    await within(succeeded, EVENT_WAIT_MS, `replayed run ${key} succeeded`);
    await p.reload();
    assert.equal(await p.locator('dd[data-status]').getAttribute('data-status'), 'succeeded');
    if (shots) await screenshot(p, `${shots}-run-replayed`);
    assert.deepEqual(await runStatus(runId), { status: 'succeeded', replays: 1 });
    assert.equal(graph.sent().filter((r) => (r.body.text as { body: string }).body === `hello ${key}`).length, 2);
    const audit = await count("audit_events WHERE action = 'run.replay' AND actor = $1 AND target = $2", [
      ADMIN,
      String(runId),
    ]);
    assert.equal(audit, 1);
  }

  test('an operator logs in through the provider (PKCE S256, nonce) and lands on the page asked for', async () => {
    const before = await sessionsOf(ADMIN);
    const response = await page.goto(`${base}/admin/runs`);
    assert.equal(response?.status(), 200);
    assert.equal(page.url(), `${base}/admin/runs`);
    assert.match(await visibleText(page, 'header'), new RegExp(ADMIN.replace('.', '\\.')));
    assert.doesNotMatch(await visibleText(page), /No login is configured/);
    const authorize = provider.authorizeRequests.at(-1)!;
    assert.equal(authorize.get('code_challenge_method'), 'S256');
    assert.ok(authorize.get('nonce') && authorize.get('state') && authorize.get('code_challenge'));
    assert.equal(await sessionsOf(ADMIN), before + 1);
    const session = (await operator.cookies(base)).find((c) => c.name === 'admin_session');
    assert.ok(session, 'no session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
  });

  test('the runs page: filter to dead runs, replay one, see it succeed', async () => {
    await replayThroughTheRunsPage(page, 'browser-replay-js', 'login');
  });

  test('with JavaScript off: log in, filter, replay and see it succeed the same way', async () => {
    const context = await newContext(browser, { javaScriptEnabled: false });
    try {
      const p = await context.newPage();
      await replayThroughTheRunsPage(p, 'browser-replay-nojs', 'nojs');
    } finally {
      await context.close();
    }
  });

  test('every page answers, with JavaScript on and off, without CSP or script errors, and its screenshot is saved', async () => {
    // Something to show: a dead run, a health check, and a WhatsApp user (an account, a
    // conversation, a reply).
    await deadRun('browser-pages-dead');
    const checked = service.events.waitFor('run:succeeded', (e) => e.task === 'health.check');
    await service.enqueuer.enqueue('health.check', {}, { key: 'browser-pages' });
    const wamid = `wamid.BROWSER${Date.now().toString(36)}`;
    const replied = service.events.waitFor('run:succeeded', (e) => e.key === `reply:${wamid}`);
    const body = textWebhook([{ from: '15550400001', text: 'balance', wamid, name: 'Ada' }]);
    const webhook = await fetch(`${base}/webhooks/whatsapp`, {
      method: 'POST',
      headers: signedWebhookHeaders(body, APP_SECRET),
      body,
    });
    assert.equal(webhook.status, 200);
    await within(Promise.all([checked, replied]), EVENT_WAIT_MS, 'health.check and the WhatsApp reply succeeded');
    const accountId = (
      await service.db.query<{ id: number }>(
        "SELECT account_id AS id FROM whatsapp_contacts WHERE phone = '15550400001'",
      )
    ).rows[0]!.id;

    const pages: Array<[path: string, nav: string, name: string]> = [
      ...NAV.map(([path, label]): [string, string, string] => [
        path,
        label,
        path === '/admin' ? 'overview' : path.slice('/admin/'.length),
      ]),
      [`/admin/accounts/${accountId}`, 'Accounts', 'account'],
      ['/admin/runs/replay?status=dead', 'Runs', 'runs-replay-confirm'],
      ['/admin/queues/maintenance/purge', 'Queues', 'queue-purge-confirm'],
    ];
    const noJs = await newContext(browser, { javaScriptEnabled: false });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
    try {
      // The same session in a context without JavaScript.
      await noJs.addCookies(await operator.cookies(base));
      const p = await noJs.newPage();
      for (const [path, label, name] of pages) {
        const response = await page.goto(`${base}${path}`);
        assert.equal(response?.status(), 200, `${path} answered ${response?.status()}`);
        assert.equal(page.url(), `${base}${path}`);
        assert.equal(await visibleText(page, 'nav.main a[aria-current="page"]'), label);
        assert.ok((await visibleText(page, 'main h1')).length > 0, `${path} has no heading`);
        await screenshot(page, `page-${name}`);
        const plain = await p.goto(`${base}${path}`);
        assert.equal(plain?.status(), 200, `${path} without JavaScript answered ${plain?.status()}`);
        assert.equal(await visibleText(p, 'main h1'), await visibleText(page, 'main h1'));
      }
    } finally {
      page.removeAllListeners('console');
      page.removeAllListeners('pageerror');
      await noJs.close();
    }
    // A blocked inline style (a CSP hash that no longer matches) or a script error shows here.
    assert.deepEqual(problems, []);
  });

  test('a state-changing POST without the CSRF token is refused and changes nothing', async () => {
    const runId = await deadRun('browser-csrf');
    const sentBefore = graph.sent().length;
    const auditBefore = await count('audit_events');
    await page.goto(`${base}/admin/runs/${runId}`);
    const removed = await page.locator('main form input[name="_csrf"]').evaluateAll((inputs) => {
      for (const input of inputs) input.remove();
      return inputs.length;
    });
    assert.ok(removed >= 1, 'the replay form carried no _csrf field');
    const answer = page.waitForResponse((r) => r.url().endsWith(`/admin/runs/${runId}/replay`));
    await page.getByRole('button', { name: `Replay run #${runId}` }).click();
    assert.equal((await answer).status(), 403);
    assert.match(await visibleText(page), /Request refused/);
    await screenshot(page, 'csrf-refused');
    // Nothing was enqueued, replayed or recorded.
    assert.deepEqual(await runStatus(runId), { status: 'dead', replays: 0 });
    assert.equal(await count('audit_events'), auditBefore);
    assert.equal(await count("task_runs WHERE idempotency_key = 'browser-csrf' AND status <> 'dead'"), 0);
    // A wrong token is refused the same way.
    await page.goto(`${base}/admin/runs/${runId}`);
    await page.locator('main form input[name="_csrf"]').evaluateAll((inputs) => {
      for (const input of inputs) input.setAttribute('value', `x${input.getAttribute('value')?.slice(1)}`);
    });
    await page.getByRole('button', { name: `Replay run #${runId}` }).click();
    assert.match(await visibleText(page), /Request refused/);
    assert.deepEqual(await runStatus(runId), { status: 'dead', replays: 0 });
    assert.equal(graph.sent().length, sentBefore);
  });

  test('an e-mail not in ADMIN_EMAILS, or not verified, is refused with a clear page, and nothing is created for it', async () => {
    const context = await newContext(browser);
    try {
      const p = await context.newPage();
      const sessionsBefore = await count('operator_sessions');
      provider.setNextUser({ email: 'intruder@example.com', email_verified: true });
      const refused = await p.goto(`${base}/admin/runs`);
      assert.equal(refused?.status(), 403);
      assert.match(await visibleText(p), /Not allowed/);
      assert.match(await visibleText(p), /intruder@example\.com.*not allowed/);
      await screenshot(p, 'login-refused');

      provider.setNextUser({ email: 'second-admin@example.com', email_verified: false });
      const unverified = await p.goto(`${base}/admin`);
      assert.equal(unverified?.status(), 403);
      assert.match(await visibleText(p), /not verified/);

      assert.equal(await count('operator_sessions'), sessionsBefore);
      assert.equal(await sessionsOf('intruder@example.com'), 0);
      assert.equal(
        (await context.cookies(base)).find((c) => c.name === 'admin_session'),
        undefined,
        'a refused login got a session cookie',
      );
      assert.equal(await count("audit_events WHERE action = 'login.refused' AND actor = 'intruder@example.com'"), 1);
      // Still no way in: /admin sends the browser to the login again, not to a page.
      const direct = await context.request.get(`${base}/admin`, { maxRedirects: 0 });
      assert.equal(direct.status(), 302);
      assert.match(direct.headers().location ?? '', /^\/auth\/login/);
    } finally {
      provider.setNextUser(DEFAULT_USER);
      await context.close();
    }
  });

  test('a callback with a forged, stolen, replayed or expired state is refused', async () => {
    const context = await newContext(browser);
    const thief = await newContext(browser);
    try {
      const sessionsBefore = await sessionsOf(ADMIN);
      const callback = await callbackUrlOf(context);
      const p = await context.newPage();

      // Forged: a state this service never issued.
      const forgedUrl = new URL(callback);
      forgedUrl.searchParams.set('state', 'forged-state-0123456789abcdefghijklmnopqrstu');
      const forged = await p.goto(forgedUrl.href);
      assert.equal(forged?.status(), 400);
      assert.match(await visibleText(p), /Login not completed/);
      await screenshot(p, 'login-callback-refused');

      // Stolen: the real callback URL opened in another browser, one with a login of its own in
      // flight (so it has a login cookie, just not this one).
      await callbackUrlOf(thief);
      const t = await thief.newPage();
      const stolen = await t.goto(callback);
      assert.equal(stolen?.status(), 400);
      assert.match(await visibleText(t), /Login not completed/);
      assert.equal(await sessionsOf(ADMIN), sessionsBefore);

      // The rightful browser can still use it (neither refusal consumed it), once.
      const loginCookie = (await context.cookies(base)).find((c) => c.name === 'admin_login');
      assert.ok(loginCookie, 'no login cookie binds the login to the browser');
      assert.equal(loginCookie.httpOnly, true);
      const ok = await p.goto(callback);
      assert.equal(ok?.status(), 200);
      assert.equal(new URL(p.url()).pathname, '/admin');
      assert.equal(await sessionsOf(ADMIN), sessionsBefore + 1);

      // Replayed: the same callback again, even with the login cookie put back, is refused.
      await context.addCookies([loginCookie]);
      const replayed = await p.goto(callback);
      assert.equal(replayed?.status(), 400);
      assert.match(await visibleText(p), /Login not completed/);
      assert.equal(await sessionsOf(ADMIN), sessionsBefore + 1);

      // Expired: a login whose state is 10 minutes old (its row aged in the database) is refused.
      await context.clearCookies();
      const late = await callbackUrlOf(context);
      const stateHash = sha256(new URL(late).searchParams.get('state')!);
      const aged = await service.db.query(
        `UPDATE operator_login_states
            SET created_at = created_at - interval '10 minutes 1 second',
                expires_at = expires_at - interval '10 minutes 1 second'
          WHERE state_hash = $1`,
        [stateHash],
      );
      assert.equal(aged.rowCount, 1);
      const expired = await p.goto(late);
      assert.equal(expired?.status(), 400);
      assert.match(await visibleText(p), /expired/);
      assert.equal(await sessionsOf(ADMIN), sessionsBefore + 1);
    } finally {
      await thief.close();
      await context.close();
    }
  });

  test('a callback landing on a second service process (same database) completes the login', {
    skip:
      testDbKind === 'postgres'
        ? false
        : 'needs PostgreSQL: embedded PGlite is opened by one process only (run with TEST_DATABASE_URL)',
  }, async () => {
    // A second instance behind the same public URL, on the same database and the same emulator.
    const secondDir = mkdtempSync(join(tmpdir(), 'backend-browser-second-'));
    const ports = await servicePorts();
    const second: RunningBackend = startBackend(['serve'], {
      ...env,
      PORT: ports.PORT!,
      DATA_DIR: secondDir,
      CLOUD_TASKS_EMULATOR_HOST: `127.0.0.1:${env.EMULATOR_GRPC_PORT}`,
      LOG_LEVEL: 'info',
    });
    const context = await newContext(browser);
    try {
      await second.waitForLine(/"listening on http/);
      const sessionsBefore = await sessionsOf(ADMIN);
      const callback = new URL(await callbackUrlOf(context));
      assert.equal(callback.port, env.PORT, 'the login started on the first process');
      callback.port = ports.PORT!;
      const p = await context.newPage();
      const response = await p.goto(callback.href);
      assert.equal(response?.status(), 200, `the second process answered:\n${second.output().slice(-3000)}`);
      assert.equal(p.url(), `http://127.0.0.1:${ports.PORT}/admin`);
      await second.waitForLine(/operator logged in/);
      assert.equal(await sessionsOf(ADMIN), sessionsBefore + 1);
      // The session it opened is good on the first process too.
      const first = await p.goto(`${base}/admin/runs`);
      assert.equal(first?.status(), 200);
      assert.equal(p.url(), `${base}/admin/runs`);
    } finally {
      await context.close();
      second.child.kill('SIGTERM');
      await second.exit;
      rmSync(secondDir, { recursive: true, force: true });
    }
  });

  test('logout ends the session in the database: the old cookie no longer opens /admin', async () => {
    await page.goto(`${base}/admin`);
    const cookies = await operator.cookies(base);
    const before = await sessionsOf(ADMIN);
    const open = await operator.request.get(`${base}/admin`, { maxRedirects: 0 });
    assert.equal(open.status(), 200);

    await page.getByRole('button', { name: 'Log out' }).click();
    assert.match(await visibleText(page), /Logged out/);
    await screenshot(page, 'logged-out');
    assert.equal(await sessionsOf(ADMIN), before - 1);
    assert.equal(await count("audit_events WHERE action = 'logout' AND actor = $1", [ADMIN]), 1);

    // The cookie as it was before logging out, in a fresh browser: no longer a way in.
    const replayed = await newContext(browser);
    try {
      await replayed.addCookies(cookies);
      const closed = await replayed.request.get(`${base}/admin`, { maxRedirects: 0 });
      assert.equal(closed.status(), 302);
      assert.match(closed.headers().location ?? '', /^\/auth\/login/);
      const post = await replayed.request.post(`${base}/admin/runs/replay`, { form: { status: 'dead' } });
      assert.equal(post.status(), 401);
    } finally {
      await replayed.close();
    }
  });
});
